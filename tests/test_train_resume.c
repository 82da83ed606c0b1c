// `tern train` survives SIGKILL: a run killed at a random step and continued
// with --resume ends with weights bit-identical to an uninterrupted run.
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/model.h"
#include "test.h"

static const char *tern_bin(void) {
    const char *b = getenv("TERN_BIN");
    return b && *b ? b : "build/tern";
}

// Starts `tern train` writing OUT (checkpoint OUT.ckpt, log OUT.log.jsonl).
static pid_t start_train(const char *out, int resume) {
    pid_t pid = fork();
    if (pid == 0) {
        const char *argv[] = {tern_bin(), "train", "--model", test_data_path("models/stories260K/stories260K.bin"),
                              "--tokenizer", test_data_path("models/stories260K/tok512.bin"),
                              "--data", test_data_path("data/tinystories/valid-sample.txt"),
                              "--out", out, "--steps", "60", "--batch", "4", "--seq", "64", "--lr", "1e-3",
                              "--warmup", "5", "--val-every", "20", "--checkpoint-every", "1", "--seed", "3",
                              "--threads", "2", resume ? "--resume" : NULL, NULL};
        freopen("/dev/null", "w", stderr);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid) {
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Last "step" value in the JSONL log (0 when none yet).
static int last_logged_step(const char *log) {
    FILE *f = fopen(log, "r");
    if (!f) return 0;
    char line[4096];
    int step = 0;
    while (fgets(line, sizeof line, f)) sscanf(line, "{\"step\": %d", &step);
    fclose(f);
    return step;
}

int main(void) {
    const char *a = test_tmp_path("tern_resume_a.gguf"), *b = test_tmp_path("tern_resume_b.gguf");
    const char *cleanup[] = {test_tmp_path("tern_resume_a.gguf"), test_tmp_path("tern_resume_a.gguf.ckpt"), test_tmp_path("tern_resume_a.gguf.log.jsonl"),
                             test_tmp_path("tern_resume_b.gguf"), test_tmp_path("tern_resume_b.gguf.ckpt"), test_tmp_path("tern_resume_b.gguf.log.jsonl")};
    for (size_t i = 0; i < sizeof cleanup / sizeof cleanup[0]; i++) unlink(cleanup[i]);
    CHECK(wait_exit(start_train(a, 0)) == 0);

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int kill_at = 5 + rand() % 40;
    pid_t pid = start_train(b, 0);
    while (last_logged_step(test_tmp_path("tern_resume_b.gguf.log.jsonl")) < kill_at && waitpid(pid, NULL, WNOHANG) == 0)
        usleep(2000);
    kill(pid, SIGKILL);
    int status = wait_exit(pid);
    printf("killed at logged step %d (target %d), exit status %d\n", last_logged_step(test_tmp_path("tern_resume_b.gguf.log.jsonl")),
           kill_at, status);
    CHECK_MSG(status == 128 + SIGKILL, "the run ended before it could be killed (status %d)", status);
    CHECK(access(b, F_OK) != 0); // no final output from a killed run
    CHECK(wait_exit(start_train(b, 1)) == 0);

    tern_model ma, mb;
    CHECK_OK(tern_model_load(&ma, a, NULL));
    CHECK_OK(tern_model_load(&mb, b, NULL));
    int identical = ma.n_tensors == mb.n_tensors, changed = 0;
    tern_model orig;
    CHECK_OK(tern_model_load(&orig, test_data_path("models/stories260K/stories260K.bin"),
                             test_data_path("models/stories260K/tok512.bin")));
    for (int i = 0; i < ma.n_tensors && identical; i++) {
        tern_tensor *t = tern_model_find(&mb, ma.tensors[i].name), *o = tern_model_find(&orig, ma.tensors[i].name);
        identical = t && memcmp(t->data, ma.tensors[i].data, (size_t)t->numel * 4) == 0;
        changed |= o && memcmp(o->data, ma.tensors[i].data, (size_t)o->numel * 4) != 0;
    }
    CHECK_MSG(identical, "resumed run differs from the uninterrupted one");
    CHECK_MSG(changed, "training did not change the weights");
    tern_model_free(&ma), tern_model_free(&mb), tern_model_free(&orig);
    for (size_t i = 0; i < sizeof cleanup / sizeof cleanup[0]; i++) unlink(cleanup[i]);
    return test_report();
}
