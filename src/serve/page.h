// The chat page tern serve shows at / (self-contained: no external scripts).
#ifndef TERN_SERVE_PAGE_H
#define TERN_SERVE_PAGE_H

extern const char tern_chat_page[];

#endif
