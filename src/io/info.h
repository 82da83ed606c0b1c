// `tern info`: a human-readable or JSON summary of a loaded model.
#ifndef TERN_IO_INFO_H
#define TERN_IO_INFO_H

#include <stdio.h>

#include "io/model.h"

// file_type: what the file is as tern made it (method, bits, group, packed or
// latent), or NULL.
void tern_model_print_info(const tern_model *m, FILE *f, int json, const char *file_type);

#endif
