/*
 * utf8.h — strict UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 *
 * THREAD SAFETY: pure functions.
 */
#ifndef AISLE_CORE_UTF8_H
#define AISLE_CORE_UTF8_H

#include <stddef.h>

/* Length of the longest valid UTF-8 prefix of s[0..n). Equals n when all valid. */
size_t utf8_valid_prefix(const char *s, size_t n);
/* 1 when s[0..n) is entirely valid UTF-8, else 0. */
int utf8_valid(const char *s, size_t n);
/* Length of the longest prefix of s[0..n) that does not end inside a multi-byte
 * character and is at most max bytes: for truncating text without splitting one. */
size_t utf8_trim(const char *s, size_t n, size_t max);

#endif
