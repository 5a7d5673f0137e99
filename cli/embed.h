/*
 * embed.h — what `aisle embed index` shares with `aisle ingest`: bringing a
 * store's passage vectors up to date.
 *
 * THREAD SAFETY: CLI code runs on the main thread.
 */
#ifndef AISLE_CLI_EMBED_H
#define AISLE_CLI_EMBED_H

#include "store/store.h"

/* The encoder file to use when none is given: $AISLE_ENCODER, else
 * models/encoder-v1.bin under $AISLE_ROOT, the working directory, or the
 * program's ../ (build/aisle -> models/). NULL when none exists. Static. */
const char *embed_default_encoder(void);

/* Embed the store's passages that have no vector. encoder_path: install this
 * encoder first (vectors of another encoder are dropped); NULL: the store's
 * own, else the default one (installed), else nothing is done and 1 is
 * returned when required is 0. Progress on a terminal unless quiet; a summary
 * line unless quiet. 0 done, 1 skipped (no encoder anywhere); dies on errors. */
int embed_store_vectors(struct store *s, const char *encoder_path, int required, int quiet);

#endif
