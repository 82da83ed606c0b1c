// Fuzzes chat template detection and rendering (tok/chat.h): the input is a
// template text to recognise, then (after the first NUL) messages, each a role
// byte and a NUL-terminated content, rendered with every template.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    (void)tern_chat_template_detect(text);
    static const char *roles[] = {"system", "user", "assistant", "tool"};
    tern_chat_msg msgs[32];
    int n = 0;
    size_t i = strlen(text) + 1;
    while (i < size && n < 32) {
        msgs[n].role = roles[(uint8_t)text[i] % 4];
        msgs[n].content = text + i + 1;
        n++;
        i += 2 + strlen(text + i + 1);
    }
    for (int t = 0; t < TERN_CHAT_COUNT; t++)
        for (int add = 0; add < 2; add++) free(tern_chat_render(t, msgs, n, add, "<s>", "</s>"));
    free(text);
    return 0;
}
