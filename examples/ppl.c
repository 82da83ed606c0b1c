// ppl: perplexity of a text file through libtern's public API.
//   ppl MODEL TOKENIZER|- TEXT [CTX [CHUNKS]]
#include <stdio.h>
#include <stdlib.h>

#include <tern.h>

int main(int argc, char **argv) {
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: %s MODEL TOKENIZER|- TEXT [CTX [CHUNKS]]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) {
        perror(argv[3]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    if (!text || fread(text, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "ppl: cannot read %s\n", argv[3]);
        return 1;
    }
    fclose(f);
    tern_llm *llm;
    if (tern_llm_load(&llm, argv[1], argv[2][0] == '-' && !argv[2][1] ? NULL : argv[2])) {
        fprintf(stderr, "ppl: %s\n", tern_error());
        return 1;
    }
    double ppl, se;
    int rc = tern_llm_perplexity(llm, text, (size_t)len, argc > 4 ? atoi(argv[4]) : 512, argc > 5 ? atoi(argv[5]) : 0,
                                 &ppl, &se);
    if (rc == 0) printf("PPL = %.4f +/- %.5f\n", ppl, se);
    else fprintf(stderr, "ppl: %s\n", tern_error());
    tern_llm_free(llm);
    free(text);
    return rc ? 1 : 0;
}
