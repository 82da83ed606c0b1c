// simple: greedy generation through libtern's public API (include/tern.h).
//   simple MODEL TOKENIZER|- PROMPT N_PREDICT
// Prints only the generated text, as `tern generate --temp 0` does.
#include <stdio.h>
#include <stdlib.h>

#include <tern.h>

static int print_piece(const char *piece, size_t len, void *user) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL TOKENIZER|- PROMPT N_PREDICT\n", argv[0]);
        return 2;
    }
    const char *tokenizer = argv[2][0] == '-' && !argv[2][1] ? NULL : argv[2];
    tern_llm *llm;
    if (tern_llm_load(&llm, argv[1], tokenizer)) {
        fprintf(stderr, "simple: %s\n", tern_error());
        return 1;
    }
    tern_gen_params p;
    tern_gen_params_default(&p);
    p.temp = 0;
    p.n_predict = atoi(argv[4]);
    int rc = tern_llm_generate(llm, argv[3], &p, print_piece, NULL, NULL);
    printf("\n");
    if (rc) fprintf(stderr, "simple: %s\n", tern_error());
    tern_llm_free(llm);
    return rc ? 1 : 0;
}
