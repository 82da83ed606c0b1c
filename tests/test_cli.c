// The CLI's guarantees a new user relies on (issue 17), on the real
// stories260K: an output never replaces an input, a failed write to stdout
// fails the command, train refuses a mode it cannot honour, a tokenizer of
// the wrong size is named as such, and generate fills the context as
// llama2.c's run.c does.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "test.h"

static const char *tern_bin(void) {
    const char *b = getenv("TERN_BIN");
    return b && *b ? b : "build/tern";
}

#define ERR_FILE test_tmp_path("cli.err")
#define OUT_FILE test_tmp_path("cli.out")

// Runs `tern ARGS` with stdout into `out` (a path) and stderr into ERR_FILE.
static int run(const char *args, const char *out) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s > %s 2> %s", tern_bin(), args, out ? out : "/dev/null", ERR_FILE);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

// 1 when stderr holds exactly one line and it contains `needle`.
static int one_line_with(const char *needle) {
    char *text;
    size_t n;
    if (tern_read_file(ERR_FILE, &text, &n)) return 0;
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    int ok = lines == 1 && strstr(text, needle) != NULL;
    if (!ok) fprintf(stderr, "  stderr (%d lines): %s", lines, text);
    free(text);
    return ok;
}

static int same_bytes(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (tern_read_file(a, &x, &nx)) return 0;
    if (tern_read_file(b, &y, &ny)) return free(x), 0;
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x), free(y);
    return same;
}

static char *slurp(const char *path) {
    char *t = NULL;
    size_t n;
    if (tern_read_file(path, &t, &n)) return calloc(1, 1);
    return t;
}

static int copy_file(const char *from, const char *to) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    return system(cmd);
}

static const char *model, *tokenizer, *text;

// Every spelling of an input as the output is refused (exit 2) and the
// input keeps its bytes: the same name, a hard link, a symlink.
static void test_output_over_input(void) {
    const char *copy = test_tmp_path("model.bin"), *hard = test_tmp_path("hard.bin"), *soft = test_tmp_path("soft.bin");
    CHECK(copy_file(model, copy) == 0);
    CHECK(link(copy, hard) == 0 && symlink(copy, soft) == 0);
    const char *outs[] = {copy, hard, soft};
    char args[8192];
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "export --model %s --tokenizer %s --group 32 --out %s", copy, tokenizer, outs[i]);
        CHECK_MSG(run(args, NULL) == 2 && one_line_with("refusing to overwrite"), "export --out %s", outs[i]);
        CHECK(same_bytes(copy, model));
    }
    // quantize: the output, and the checkpoint and log derived from it.
    snprintf(args, sizeof args, "quantize --model %s --tokenizer %s --calib %s --method absmean --group 32 --out %s",
             copy, tokenizer, text, copy);
    CHECK(run(args, NULL) == 2 && one_line_with("refusing to overwrite"));
    snprintf(args, sizeof args,
             "quantize --model %s --tokenizer %s --calib %s --method absmean --group 32 --steps 0 --out %s "
             "--log %s",
             copy, tokenizer, text, test_tmp_path("q.gguf"), hard);
    CHECK(run(args, NULL) == 2 && one_line_with("refusing to overwrite"));
    snprintf(args, sizeof args, "train --model %s --tokenizer %s --data %s --steps 1 --out %s", copy, tokenizer, text,
             text);
    CHECK(run(args, NULL) == 2 && one_line_with("refusing to overwrite"));
    CHECK(same_bytes(copy, model) && access(test_tmp_path("q.gguf"), F_OK) != 0);
    snprintf(args, sizeof args, "export --model %s --tokenizer %s --pack 3 --out %s", copy, tokenizer,
             test_tmp_path("p3.tern"));
    CHECK(run(args, NULL) == 2 && one_line_with("unknown --pack '3'"));
    const char *bad_threads[] = {"abc", "0", "-3"};
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "info --model %s --threads %s", copy, bad_threads[k]);
        CHECK(run(args, NULL) == 2 && one_line_with("--threads must be an integer in [1, 4096]"));
    }
    // An output in a directory that does not exist is named as given (not its temp file).
    snprintf(args, sizeof args, "export --model %s --tokenizer %s --group 32 --out /nonexistent-dir/x.tern", copy,
             tokenizer);
    CHECK(run(args, NULL) == 1 && one_line_with("/nonexistent-dir/x.tern: cannot create"));
    char *err = slurp(ERR_FILE);
    CHECK(!strstr(err, ".tmp."));
    free(err);
    unlink(hard), unlink(soft), unlink(copy);
}

// Output that cannot be written is an error, not a silent success.
static void test_stdout_full(void) {
    char args[4096];
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --prompt 'Once' -n 8 --temp 0", model, tokenizer);
    CHECK(run(args, "/dev/full") == 1);
    char *err;
    size_t n;
    CHECK(tern_read_file(ERR_FILE, &err, &n) == 0 && strstr(err, "error writing to standard output"));
    free(err);
    snprintf(args, sizeof args, "info --model %s --tokenizer %s --json", model, tokenizer);
    CHECK(run(args, "/dev/full") == 1);
    CHECK(run(args, OUT_FILE) == 0); // and the same command succeeds where it can write
}

static void test_train_blockwise(void) {
    char args[4096];
    snprintf(args, sizeof args, "train --model %s --tokenizer %s --data %s --mode blockwise --out %s", model,
             tokenizer, text, test_tmp_path("b.gguf"));
    CHECK(run(args, NULL) == 2 && one_line_with("tern quantize --mode blockwise"));
    CHECK(access(test_tmp_path("b.gguf"), F_OK) != 0);
}

static void test_vocab_mismatch(void) {
    char args[4096];
    // Neither a model file nor a model directory: say what is expected.
    snprintf(args, sizeof args, "info --model %s", text);
    CHECK(run(args, NULL) == 1 && one_line_with("not a model file (expected GGUF, a llama2.c checkpoint"));
    snprintf(args, sizeof args, "info --model %s", test_tmp_dir());
    CHECK(run(args, NULL) == 1 && one_line_with("not a model directory (expected a Hugging Face directory"));
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --prompt hi", model,
             test_src_path("tests/fixtures/tiny_hf/tokenizer.json"));
    CHECK(run(args, NULL) == 1 && one_line_with("vocabulary size mismatch: the tokenizer has 285 tokens"));
    CHECK(one_line_with("has 512"));
}

// A 16-token context: BOS plus 15 more positions give 16 tokens, a note on
// stderr says the limit stopped it, and the seed is printed.
static void test_generate_context(void) {
    char args[4096];
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --prompt '' -n 100 --temp 0 --ctx 16", model,
             tokenizer);
    CHECK(run(args, OUT_FILE) == 0);
    char *err;
    size_t n;
    CHECK(tern_read_file(ERR_FILE, &err, &n) == 0);
    CHECK_MSG(strstr(err, "stopped at the context limit of 16 tokens after 16 of --n-predict 100"), "%s", err);
    CHECK(strstr(err, "tern generate: seed ") && strstr(err, "generated: 16 tokens"));
    free(err);
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --prompt '' -n 4 --temp 0 --ctx 4096", model,
             tokenizer);
    CHECK(run(args, OUT_FILE) == 0);
    CHECK(tern_read_file(ERR_FILE, &err, &n) == 0);
    CHECK_MSG(strstr(err, "warning: --ctx 4096 exceeds the model's training context 512"), "%s", err);
    free(err);
}

// eval reads every task before loading the model (a bad file: one line, no
// table header), and a choice longer than the context is scored on its last
// tokens and counted instead of failing the task (PIQA line 315: 625 tokens).
static void test_eval_inputs(void) {
    char args[4096];
    const char *piqa = test_data_path("data/tasks/piqa.jsonl");
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --task %s --task %s", model, tokenizer, piqa,
             test_tmp_path("missing.jsonl"));
    CHECK(run(args, OUT_FILE) == 1 && one_line_with("missing.jsonl"));
    char *out;
    size_t n;
    CHECK(tern_read_file(OUT_FILE, &out, &n) == 0 && n == 0);
    free(out);
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --task %s --limit 320 --json", model, tokenizer, piqa);
    CHECK(run(args, OUT_FILE) == 0);
    CHECK(tern_read_file(OUT_FILE, &out, &n) == 0);
    const char *t = strstr(out, "\"truncated\": "), *k = strstr(out, "\"tokens\": ");
    CHECK_MSG(t && atoi(t + 13) >= 1 && k && atoll(k + 10) > 320, "%s", out);
    free(out);
    CHECK(tern_read_file(ERR_FILE, &out, &n) == 0);
    CHECK_MSG(strstr(out, "longer than the context") && strstr(out, "eval piqa"), "%s", out); // progress with --json
    free(out);
}

// Starts `tern train` on stories260K (stderr into ERR_FILE) and waits until
// its log shows a step, so the signal handlers are in place.
static pid_t start_train(const char *out) {
    char log[1200];
    snprintf(log, sizeof log, "%s.log.jsonl", out);
    unlink(log);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL); // a background parent may pass SIGINT on as ignored
        const char *argv[] = {tern_bin(), "train", "--model", model, "--tokenizer", tokenizer, "--data", text,
                              "--out", out, "--steps", "100000", "--batch", "16", "--seq", "256", "--threads", "1",
                              "--val-every", "0", "--checkpoint-every", "1000", NULL};
        if (!freopen(ERR_FILE, "w", stderr)) _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 30000; i++) { // up to 300 s (sanitizer builds on a busy machine)
        struct stat st;
        if (stat(log, &st) == 0 && st.st_size > 0) break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    return pid;
}

static int exit_status(pid_t pid) {
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Ctrl-C is acknowledged at once and stops after the step with a checkpoint;
// a second Ctrl-C aborts without one.
static void test_interrupt(void) {
    const char *out = test_tmp_path("int.gguf");
    char ckpt[1200], *err;
    size_t n;
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
    unlink(ckpt);
    pid_t pid = start_train(out);
    kill(pid, SIGINT);
    CHECK(exit_status(pid) == 1);
    CHECK(tern_read_file(ERR_FILE, &err, &n) == 0);
    CHECK_MSG(strstr(err, "stopping after this step") && strstr(err, "continue with --resume"), "%s", err);
    free(err);
    CHECK(access(ckpt, F_OK) == 0 && access(out, F_OK) != 0);
    unlink(ckpt);
    pid = start_train(out);
    kill(pid, SIGINT);
    nanosleep(&(struct timespec){0, 20000000}, NULL); // two signals at once would merge into one
    kill(pid, SIGINT);
    CHECK(exit_status(pid) == 128 + SIGINT);
    CHECK(tern_read_file(ERR_FILE, &err, &n) == 0);
    CHECK_MSG(strstr(err, "aborted"), "%s", err);
    free(err);
    CHECK(access(ckpt, F_OK) != 0 && access(out, F_OK) != 0);
    char log[1200];
    snprintf(log, sizeof log, "%s.log.jsonl", out);
    unlink(log);
}


// llama.cpp's spellings are the same options: identical output; --name=value
// works; bench checks its format list before running; ppl prints the running
// estimate; info takes a llama2.c checkpoint without a tokenizer.
static void test_llama_cpp_spellings(void) {
    char args[4096];
    snprintf(args, sizeof args,
             "generate --model %s --tokenizer %s --prompt 'Once upon' --n-predict 12 --temp 0.7 --seed 5 --ctx 64 "
             "--top-k 20 --min-p 0.05 --repeat-penalty 1.2 --repeat-last-n 16",
             model, tokenizer);
    CHECK(run(args, OUT_FILE) == 0);
    char *a = slurp(OUT_FILE);
    const char *prompt_file = test_tmp_path("prompt.txt");
    FILE *f = fopen(prompt_file, "w");
    if (f) fputs("Once upon", f), fclose(f);
    snprintf(args, sizeof args,
             "generate -m %s --tokenizer %s -f %s -n 12 --temperature 0.7 -s 5 -c 64 --top-k=20 --min-p 0.05 "
             "--repeat-penalty 1.2 --repeat-last-n 16",
             model, tokenizer, prompt_file);
    CHECK(run(args, OUT_FILE) == 0);
    char *b = slurp(OUT_FILE);
    CHECK_MSG(strlen(a) > 10 && !strcmp(a, b), "'%s' vs '%s'", a, b);
    free(a), free(b);
    snprintf(args, sizeof args, "generate -m %s --tokenizer %s -p x -f %s", model, tokenizer, prompt_file);
    CHECK(run(args, NULL) == 2 && one_line_with("not both"));
    snprintf(args, sizeof args, "generate -m %s --tokenizer %s -p x --top-k -1", model, tokenizer);
    CHECK(run(args, NULL) == 2 && one_line_with("--top-k must be an integer"));
    // --format picks the linears' storage as in ppl / bench (checked before loading).
    snprintf(args, sizeof args, "generate -m %s --tokenizer %s -p x --format bogus", model, tokenizer);
    CHECK(run(args, NULL) == 2 && one_line_with("unknown --format bogus"));
    snprintf(args, sizeof args, "chat -m %s --tokenizer %s --format t3", model, tokenizer);
    CHECK(run(args, NULL) == 2 && one_line_with("unknown --format t3"));
    snprintf(args, sizeof args, "generate -m %s --tokenizer %s -p 'Once upon' -n 8 --temp 0 --format q8", model, tokenizer);
    CHECK(run(args, OUT_FILE) == 0);

    // bench: the list is checked first (no run, one line), and pp rows have no bandwidth.
    snprintf(args, sizeof args, "bench -m %s --compare f32,bogus -p 8 -n 4 -r 1", model);
    CHECK(run(args, OUT_FILE) == 2 && one_line_with("unknown format 'bogus'"));
    snprintf(args, sizeof args, "bench -m %s --compare '' -p 8 -n 4 -r 1", model);
    CHECK(run(args, OUT_FILE) == 2 && one_line_with("no format"));
    snprintf(args, sizeof args, "bench -m %s --compare f32,f32,f32,f32,f32,f32,f32,f32,f32,f32,f32,f32,f32,f32,f32,f32,f32",
             model);
    CHECK(run(args, OUT_FILE) == 2 && one_line_with("at most 16"));
    snprintf(args, sizeof args, "bench -m %s --compare f32 -p 8 -n 4 -r 1 -o csv -t 1", model);
    CHECK(run(args, OUT_FILE) == 0);
    char *csv = slurp(OUT_FILE);
    CHECK_MSG(!strncmp(csv, "format,test,tokens_per_s", 24) && strstr(csv, "\nf32,pp8,") && strstr(csv, ",,\n") &&
                  strstr(csv, "\nf32,tg4,"),
              "%s", csv);
    free(csv);
    // The waiting policy: the user's is kept and reported; without one tern
    // runs itself again with a bounded spin (GOMP_SPINCOUNT) set.
    snprintf(args, sizeof args, "bench -m %s --compare f32 -p 8 -n 4 -r 1 --json", model);
    CHECK(run(args, OUT_FILE) == 0);
    char *js = slurp(OUT_FILE);
    CHECK_MSG(strstr(js, "\"omp_wait\": \"OMP_WAIT_POLICY=passive\""), "%s", js); // ctest sets passive
    free(js);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u KMP_BLOCKTIME '%s' %s > %s 2> %s",
             tern_bin(), args, OUT_FILE, ERR_FILE);
    CHECK(system(cmd) == 0);
    js = slurp(OUT_FILE);
    CHECK_MSG(strstr(js, "\"omp_wait\": \"OMP_WAIT_POLICY=active GOMP_SPINCOUNT="), "%s", js);
    free(js);

    // ppl: llama-perplexity's running line, then the result.
    snprintf(args, sizeof args, "ppl -m %s --tokenizer %s -f %s -c 128 --chunks 3", model, tokenizer, text);
    CHECK(run(args, OUT_FILE) == 0);
    char *ppl = slurp(OUT_FILE);
    CHECK_MSG(!strncmp(ppl, "[1]", 3) && strstr(ppl, ",[2]") && strstr(ppl, ",[3]") && strstr(ppl, "PPL = "), "%s",
              ppl);
    free(ppl);

    // info: a llama2.c checkpoint alone.
    snprintf(args, sizeof args, "info %s", model);
    CHECK(run(args, OUT_FILE) == 0);
    char *info = slurp(OUT_FILE);
    CHECK(strstr(info, "(llama2c)") && strstr(info, "tokenizer:    none"));
    free(info);
    // --help comes from the table: every option once, aliases listed.
    CHECK(run("quantize --help", OUT_FILE) == 0);
    char *help = slurp(OUT_FILE);
    int steps = 0;
    for (const char *p = help; (p = strstr(p, "  --steps ")); p++) steps++;
    CHECK(steps == 1 && strstr(help, "--calib TEXT; --data") && !strstr(help, "\\"));
    free(help);
    unlink(prompt_file);
}

// Resuming a finished run trains nothing and reports the run's real final
// figures (from its log), not zeros.
static void test_resume_finished(void) {
    const char *out = test_tmp_path("fin.gguf");
    char args[4096];
    snprintf(args, sizeof args,
             "train --model %s --tokenizer %s --data %s --steps 4 --batch 2 --seq 64 --val-every 2 --threads 1 "
             "--keep-checkpoint --out %s",
             model, tokenizer, text, out);
    CHECK(run(args, NULL) == 0);
    char *first = slurp(ERR_FILE), a[64] = "", b[64] = "";
    const char *p = strstr(first, "final loss ");
    if (p) snprintf(a, sizeof a, "%.30s", p);
    strcat(args, " --resume");
    CHECK(run(args, NULL) == 0);
    char *second = slurp(ERR_FILE);
    p = strstr(second, "final loss ");
    if (p) snprintf(b, sizeof b, "%.30s", p);
    CHECK_MSG(a[0] && !strcmp(a, b) && !strstr(b, "nan") && !strstr(b, "loss 0.0000"), "'%s' vs '%s'", a, b);
    free(first), free(second);
    char path[1200];
    unlink(out);
    snprintf(path, sizeof path, "%s.ckpt", out), unlink(path);
    snprintf(path, sizeof path, "%s.log.jsonl", out), unlink(path);
}

// tern chat / generate --chat on a model without a chat template: an unknown
// --chat-template is a usage error naming the option (exit 2, before loading
// anything); no template and no override is one line (exit 1); a system
// prompt the template cannot express is refused before any turn; with an
// override the chat runs (stories260K ends turns with its EOS under zephyr).
static void test_chat_inputs(void) {
    char args[4096];
    snprintf(args, sizeof args, "chat --model %s --tokenizer %s --chat-template alpaca", model, tokenizer);
    CHECK(run(args, NULL) == 2 && one_line_with("unknown --chat-template 'alpaca' (chatml"));
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --chat -p hi --chat-template x", model, tokenizer);
    CHECK(run(args, NULL) == 2 && one_line_with("unknown --chat-template 'x'"));
    snprintf(args, sizeof args, "chat --model %s --tokenizer %s < /dev/null", model, tokenizer);
    CHECK(run(args, NULL) == 1 && one_line_with("model has no chat template; pass --chat-template NAME"));
    CHECK(one_line_with(model));
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --chat -p hi", model, tokenizer);
    CHECK(run(args, NULL) == 1 && one_line_with("model has no chat template; pass --chat-template NAME"));
    snprintf(args, sizeof args, "chat --model %s --tokenizer %s --chat-template gemma --system 'Be brief.' < /dev/null",
             model, tokenizer);
    CHECK(run(args, NULL) == 1 && one_line_with("System role not supported"));
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s -p hi --system x", model, tokenizer);
    CHECK(run(args, NULL) == 2 && one_line_with("--system and --chat-template go with --chat"));
    snprintf(args, sizeof args, "chat --model %s --tokenizer %s --chat-template zephyr --temp 0 -n 16 < /dev/null",
             model, tokenizer);
    CHECK(run(args, OUT_FILE) == 0);
    char *out = slurp(OUT_FILE);
    CHECK(out[0] == 0); // no input, no reply
    free(out);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "printf 'Lily\\n\\n/reset\\nTom\\n' | '%s' chat --model %s --tokenizer %s "
             "--chat-template zephyr --temp 0 -n 16 > %s 2> %s", tern_bin(), model, tokenizer, OUT_FILE, ERR_FILE);
    CHECK(system(cmd) == 0);
    out = slurp(OUT_FILE);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    CHECK_MSG(lines >= 2, "two replies expected: %s", out); // a reply may hold newlines of its own
    free(out);
    // A turn that no longer fits the context is said, dropped, and the chat goes on (exit status 1).
    char long_line[1200] = "";
    for (int i = 0; i < 40; i++) strcat(long_line, "the dog ran ");
    snprintf(cmd, sizeof cmd, "printf '%s\\nLily\\n' | '%s' chat --model %s --tokenizer %s --chat-template zephyr "
             "--temp 0 -n 8 --ctx 64 > %s 2> %s", long_line, tern_bin(), model, tokenizer, OUT_FILE, ERR_FILE);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    out = slurp(OUT_FILE);
    char *err = slurp(ERR_FILE);
    CHECK_MSG(strstr(err, "no longer fits the context of 64 tokens") && out[0], "stdout '%s' stderr '%s'", out, err);
    free(out), free(err);
}

// A quantized GGUF (llama.cpp's TQ1_0 / TQ2_0 / Q1_0 / Q2_0 fixture): commands
// that run only the native format load its packed matrices without FP32
// copies; another --format loads them (bench --compare with f32, generate
// --format f32), and both run.
static void test_packed_only_cli(void) {
    const char *q = test_src_path("tests/fixtures/lowbit_llama.gguf");
    char args[4096];
    snprintf(args, sizeof args, "info --model %s", q);
    CHECK(run(args, OUT_FILE) == 0);
    char *out = slurp(OUT_FILE);
    CHECK_MSG(strstr(out, "packed:       7 decoder linears"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "bench --model %s --compare native,f32 -p 4 -n 2 -r 1 -o csv", q);
    CHECK(run(args, OUT_FILE) == 0);
    out = slurp(OUT_FILE);
    CHECK_MSG(strstr(out, "tern-t") && strstr(out, "f32,"), "%s", out);
    free(out);
    char *gen[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args, "generate --model %s -p Hello -n 4 --temp 0 --format %s", q, k ? "f32" : "native");
        CHECK(run(args, OUT_FILE) == 0);
        gen[k] = slurp(OUT_FILE);
    }
    CHECK_MSG(gen[0][0] && gen[1][0], "'%s' '%s'", gen[0], gen[1]);
    free(gen[0]), free(gen[1]);
}

int main(void) {
    test_packed_only_cli();
    model = test_data_path("models/stories260K/stories260K.bin");
    tokenizer = test_data_path("models/stories260K/tok512.bin");
    text = test_data_path("data/tinystories/valid-sample.txt");
    test_output_over_input();
    test_stdout_full();
    test_train_blockwise();
    test_vocab_mismatch();
    test_generate_context();
    test_eval_inputs();
    test_interrupt();
    test_llama_cpp_spellings();
    test_resume_finished();
    test_chat_inputs();
    return test_report();
}
