/*
 * quant.h — ggml tensor element types: block sizes, row sizes, names, and the
 * reference (plain C, bit-exact with ggml's reference routines) quantize and
 * dequantize of one row.
 *
 * A row of ne0 elements of a block type is ne0/blck consecutive blocks; a
 * block is a fixed number of bytes (ggml_type_size). Layouts, all little-endian,
 * "f16" an IEEE half:
 *
 *   F32   1 elem,   4 B   float
 *   F16   1 elem,   2 B   half
 *   BF16  1 elem,   2 B   top 16 bits of a float (round to nearest even)
 *   Q8_0  32 elems, 34 B  f16 d; i8 q[32];           x[i] = d * q[i]
 *   Q4_0  32 elems, 18 B  f16 d; u8 q[16];           x[i]    = d * ((q[i] & 15) - 8),
 *                                                    x[i+16] = d * ((q[i] >> 4) - 8)   (i < 16)
 *   Q4_K  256 elems, 144 B  f16 d, dmin; u8 scales[12]; u8 q[128]
 *         8 sub-blocks of 32, each with a 6-bit scale sc and 6-bit min m packed
 *         in scales[] (sub-block j < 4: sc = s[j] & 63, m = s[j+4] & 63; j >= 4:
 *         sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4, m = (s[j+4] >> 4) | (s[j] >> 6) << 4).
 *         Sub-blocks 2c and 2c+1 share q[32c .. 32c+31]: low nibbles for 2c,
 *         high nibbles for 2c+1. x = d*sc * nibble - dmin*m.
 *   Q6_K  256 elems, 210 B  u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
 *         two halves of 128; in half h (ql += 64h, qh += 32h, sc += 8h) for
 *         l < 32, with the 6-bit values q = low4 | high2 << 4, minus 32:
 *           x[l]    from ql[l] & 15,    qh[l] bits 0-1, scale sc[l/16]
 *           x[l+32] from ql[l+32] & 15, qh[l] bits 2-3, scale sc[l/16 + 2]
 *           x[l+64] from ql[l] >> 4,    qh[l] bits 4-5, scale sc[l/16 + 4]
 *           x[l+96] from ql[l+32] >> 4, qh[l] bits 6-7, scale sc[l/16 + 6]
 *         x = d * sc * (q - 32).
 *
 * The other ggml types have sizes and names here (so files holding them can be
 * opened and listed) but no conversion: the row functions answer AISLE_EINVAL.
 *
 * THREAD SAFETY: all functions are pure.
 */
#ifndef AISLE_GGUF_QUANT_H
#define AISLE_GGUF_QUANT_H

#include "gguf/gguf.h"

#include <stddef.h>
#include <stdint.h>

#define QK4_0 32
#define QK8_0 32
#define QK_K 256

/* Bytes per block; 0 for an unknown type. */
size_t ggml_type_size(enum ggml_type t);
/* Elements per block; 0 for an unknown type. */
int64_t ggml_blck_size(enum ggml_type t);
/* Bytes in a row of ne0 elements; 0 when the type is unknown, ne0 <= 0, ne0 is
 * not a multiple of the block size or the size overflows. */
size_t ggml_row_size(enum ggml_type t, int64_t ne0);
/* "f32", "q4_K", ... as ggml names them; NULL for an unknown type. */
const char *ggml_type_name(enum ggml_type t);
/* Parse a name (case-insensitive) back to a type. 0 or AISLE_ENOTFOUND. */
int ggml_type_from_name(const char *name, enum ggml_type *t);
/* 1 when x -> t (quantize) is implemented, 0 otherwise. */
int ggml_can_quantize(enum ggml_type t);
/* 1 when t -> float (dequantize) is implemented, 0 otherwise. */
int ggml_can_dequantize(enum ggml_type t);

/* Quantize n floats (a multiple of the block size) into ggml_row_size(t, n)
 * bytes at y. 0 or AISLE_EINVAL (type without a quantizer, bad n). */
int ggml_quantize_row(enum ggml_type t, const float *x, void *y, int64_t n);
/* Dequantize n elements of type t at x (ggml_row_size(t, n) bytes, any
 * alignment) into y. 0 or AISLE_EINVAL. */
int ggml_dequantize_row(enum ggml_type t, const void *x, float *y, int64_t n);

/* Scalar conversions, round to nearest even; NaN stays NaN, overflow gives inf. */
uint16_t ggml_fp32_to_fp16(float f);
float ggml_fp16_to_fp32(uint16_t h);
uint16_t ggml_fp32_to_bf16(float f);
float ggml_bf16_to_fp32(uint16_t h);

#endif
