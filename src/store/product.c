/* product.c — catalog reads for cards and the product selector (product.h). */
#include "store/product.h"

#include "core/error.h"

#include <sqlite3.h>
#include <string.h>

/* Copy s into out[cap], cut at a UTF-8 character boundary. */
static void copy_cut(char *out, size_t cap, const unsigned char *s)
{
    size_t n = s ? strlen((const char *)s) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && (s[n] & 0xc0) == 0x80) /* do not end inside a character */
            n--;
    }
    if (n)
        memcpy(out, s, n);
    out[n] = '\0';
}

int store_product_brief(struct store *s, const char *id, struct store_brief *out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store_db(s), "SELECT title, brand FROM products WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return AISLE_EDB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_cut(out->title, sizeof(out->title), sqlite3_column_text(st, 0));
        copy_cut(out->brand, sizeof(out->brand), sqlite3_column_text(st, 1));
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? AISLE_ENOTFOUND : AISLE_EDB;
    }
    sqlite3_finalize(st);
    return rc;
}

int store_products_in_stock(struct store *s, size_t limit, int (*cb)(void *ud, const char *id, const char *title),
                            void *ud)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store_db(s),
                           "SELECT p.id, p.title FROM products p WHERE EXISTS"
                           " (SELECT 1 FROM offers o WHERE o.product_id = p.id AND o.stock > 0)"
                           " ORDER BY p.id LIMIT ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return AISLE_EDB;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = cb(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : AISLE_EDB;
}
