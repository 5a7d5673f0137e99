/*
 * schema.sql.h — the store's schema as SQL migrations, applied in order by
 * store_open(). Migration N brings PRAGMA user_version from N-1 to N. Never edit a
 * migration that has shipped; add a new one.
 *
 * Passages and FTS: each FTS5 table is an external-content index over a view of
 * `passages`, so passage text is stored once. New passages are indexed by
 * store.c in bulk before each commit (store_fts_flush: one INSERT ... SELECT
 * per index, far faster than a trigger per row in FTS5); removed ones by the
 * AFTER DELETE trigger (an FTS5 'delete' must be given the values that were
 * indexed, which the trigger has in OLD). Migration 1 is unreleased and was
 * edited in place to drop the old AFTER INSERT trigger.
 */
static const char *const store_migrations[] = {
    /* 1: the first schema */
    "CREATE TABLE products(\n"
    "  id TEXT PRIMARY KEY,\n"
    "  title TEXT NOT NULL,\n"
    "  brand TEXT,\n"
    "  category TEXT,                 -- path 'A > B > C'\n"
    "  bullets TEXT NOT NULL,         -- JSON array of strings\n"
    "  description TEXT,\n"
    "  attributes TEXT NOT NULL,      -- JSON object name -> value\n"
    "  updated_at TEXT NOT NULL\n"
    ");\n"
    /* A review's text is kept once, in its passage (source 'review', ref_id =
     * the review id); the row is small, so the table is keyed by id itself. */
    "CREATE TABLE reviews(\n"
    "  id TEXT PRIMARY KEY,\n"
    "  product_id TEXT NOT NULL REFERENCES products(id),\n"
    "  rating REAL, title TEXT,\n"
    "  helpful_votes INTEGER, date TEXT, author TEXT\n"
    ") WITHOUT ROWID;\n"
    "CREATE INDEX reviews_product ON reviews(product_id);\n"
    "CREATE TABLE questions(\n"
    "  id TEXT PRIMARY KEY,\n"
    "  product_id TEXT NOT NULL REFERENCES products(id),\n"
    "  question TEXT NOT NULL, votes INTEGER, date TEXT\n"
    ");\n"
    "CREATE INDEX questions_product ON questions(product_id);\n"
    "CREATE TABLE answers(\n"
    "  question_id TEXT NOT NULL REFERENCES questions(id) ON DELETE CASCADE,\n"
    "  ord INTEGER NOT NULL, text TEXT NOT NULL, votes INTEGER,\n"
    "  PRIMARY KEY(question_id, ord)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE offers(\n"
    "  product_id TEXT NOT NULL REFERENCES products(id),\n"
    "  seller TEXT NOT NULL,\n"
    "  price_minor INTEGER NOT NULL CHECK(price_minor >= 0),\n"
    "  currency TEXT NOT NULL,\n"
    "  stock INTEGER NOT NULL CHECK(stock >= 0),\n"
    "  delivery_days INTEGER,\n"
    "  updated_at TEXT NOT NULL,\n"
    "  PRIMARY KEY(product_id, seller)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE orders(\n"
    "  id TEXT PRIMARY KEY, customer TEXT NOT NULL, created_at TEXT NOT NULL, currency TEXT\n"
    ");\n"
    "CREATE INDEX orders_customer ON orders(customer);\n"
    "CREATE TABLE order_lines(\n"
    "  order_id TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,\n"
    "  line_no INTEGER NOT NULL,\n"
    "  product_id TEXT NOT NULL REFERENCES products(id),\n"
    "  quantity INTEGER NOT NULL CHECK(quantity > 0),\n"
    "  unit_price_minor INTEGER,\n"
    "  PRIMARY KEY(order_id, line_no)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE order_events(\n"
    "  order_id TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,\n"
    "  seq INTEGER NOT NULL, status TEXT NOT NULL, at TEXT NOT NULL,\n"
    "  PRIMARY KEY(order_id, seq)\n"
    ") WITHOUT ROWID;\n"
    /* Evidence passages. source: product|bullet|attribute|description|review|qa.
     * ref_id: the product id (catalog sources), review id or question id.
     * aux: brand and category (product), review title (review), question (qa). */
    "CREATE TABLE passages(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  product_id TEXT NOT NULL,\n"
    "  source TEXT NOT NULL,\n"
    "  ref_id TEXT NOT NULL,\n"
    "  ord INTEGER NOT NULL,\n"
    "  text TEXT NOT NULL,\n"
    "  aux TEXT\n"
    ");\n"
    "CREATE INDEX passages_ref ON passages(ref_id, source);\n"
    "CREATE INDEX passages_product ON passages(product_id, source);\n"
    "CREATE VIEW catalog_src AS SELECT id,\n"
    "  CASE WHEN source='product' THEN text END AS title,\n"
    "  CASE WHEN source='bullet' THEN text END AS bullet,\n"
    "  CASE WHEN source='attribute' THEN text END AS attribute,\n"
    "  CASE WHEN source='description' THEN text END AS description,\n"
    "  CASE WHEN source='product' THEN aux END AS meta\n"
    "  FROM passages WHERE source IN ('product','bullet','attribute','description');\n"
    "CREATE VIEW review_src AS SELECT id, aux AS title, text FROM passages WHERE source='review';\n"
    "CREATE VIEW qa_src AS SELECT id, aux AS question, text AS answer FROM passages WHERE source='qa';\n"
    "CREATE VIRTUAL TABLE catalog_fts USING fts5(title, bullet, attribute, description, meta,\n"
    "  content='catalog_src', content_rowid='id', tokenize='unicode61 remove_diacritics 2');\n"
    "CREATE VIRTUAL TABLE review_fts USING fts5(title, text,\n"
    "  content='review_src', content_rowid='id', tokenize='unicode61 remove_diacritics 2');\n"
    "CREATE VIRTUAL TABLE qa_fts USING fts5(question, answer,\n"
    "  content='qa_src', content_rowid='id', tokenize='unicode61 remove_diacritics 2');\n"
    "CREATE VIRTUAL TABLE catalog_vocab USING fts5vocab(catalog_fts, 'row');\n"
    "CREATE VIRTUAL TABLE review_vocab USING fts5vocab(review_fts, 'row');\n"
    "CREATE VIRTUAL TABLE qa_vocab USING fts5vocab(qa_fts, 'row');\n"
    "CREATE TRIGGER passages_ad AFTER DELETE ON passages BEGIN\n"
    "  INSERT INTO catalog_fts(catalog_fts, rowid, title, bullet, attribute, description, meta)\n"
    "    SELECT 'delete', old.id,\n"
    "      CASE WHEN old.source='product' THEN old.text END,\n"
    "      CASE WHEN old.source='bullet' THEN old.text END,\n"
    "      CASE WHEN old.source='attribute' THEN old.text END,\n"
    "      CASE WHEN old.source='description' THEN old.text END,\n"
    "      CASE WHEN old.source='product' THEN old.aux END\n"
    "    WHERE old.source IN ('product','bullet','attribute','description');\n"
    "  INSERT INTO review_fts(review_fts, rowid, title, text)\n"
    "    SELECT 'delete', old.id, old.aux, old.text WHERE old.source='review';\n"
    "  INSERT INTO qa_fts(qa_fts, rowid, question, answer)\n"
    "    SELECT 'delete', old.id, old.aux, old.text WHERE old.source='qa';\n"
    "END;\n",
    /* 2: passage vectors for dense retrieval (src/retrieval/dense.h): one int8
     * vector per passage (blob: f32 scale, then D int8), its source group
     * (0 catalog, 1 reviews, 2 Q&A) for per-source scans, and the encoder that
     * made them in dense_meta('encoder'). Vectors go with their passages. */
    "CREATE TABLE passage_vectors(\n"
    "  id INTEGER PRIMARY KEY,        -- passages.id\n"
    "  grp INTEGER NOT NULL,\n"
    "  vec BLOB NOT NULL\n"
    ");\n"
    "CREATE TABLE dense_meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);\n"
    "CREATE TRIGGER passages_vec_ad AFTER DELETE ON passages BEGIN\n"
    "  DELETE FROM passage_vectors WHERE id = old.id;\n"
    "END;\n",
    /* 3: no query reads reviews or questions by product (evidence and search
     * go through passages_product), and nothing deletes a product, so these
     * indexes only cost a random insert per row of a bulk load. */
    "DROP INDEX IF EXISTS reviews_product; DROP INDEX IF EXISTS questions_product;\n",
};
