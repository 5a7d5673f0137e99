/*
 * cmds.h — the table of subcommands. Add a line here and a cli/NAME.c that
 * defines the function; aisle.c builds its dispatch table and help from this.
 */
#ifndef AISLE_CLI_CMDS_H
#define AISLE_CLI_CMDS_H

int cmd_ingest(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_shop(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_corpus(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_route(int argc, char **argv);
int cmd_evidence(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_feedback(int argc, char **argv);
/* `aisle eval answers` (cli/eval_answers.c), routed by cmd_eval. */
int eval_answers(int argc, char **argv);

#define AISLE_COMMANDS \
    X("ingest", cmd_ingest, "load products, reviews, Q&A, offers and orders into a store") \
    X("search", cmd_search, "search a store's evidence passages: hybrid (BM25 + dense + rerank) or BM25") \
    X("demo", cmd_demo, "generate the demo store's offers and orders (seeded)") \
    X("shop", cmd_shop, "ask live store data: offers, delivery to a postcode, order status") \
    X("tokenize", cmd_tokenize, "split text into the tokens of a GGUF model's tokenizer") \
    X("detokenize", cmd_detokenize, "turn token ids back into text") \
    X("tokenizer", cmd_tokenizer, "train a byte-level BPE tokenizer (tokenizer train)") \
    X("model", cmd_model, "inspect a GGUF model (model info) or re-quantize it (model convert)") \
    X("generate", cmd_generate, "continue a prompt (or a chat turn) with a GGUF model, streaming") \
    X("perplexity", cmd_perplexity, "a model's perplexity on a text file, window by window") \
    X("logits", cmd_logits, "the last position's logits for a list of token ids") \
    X("bench", cmd_bench, "engine speed on a model (bench model): prefill, batched decode") \
    X("corpus", cmd_corpus, "tokenize a store and text files into training shards (corpus build)") \
    X("train", cmd_train, "train a model on a corpus or SFT shards (also under mpirun); checkpoints, GGUF export") \
    X("serve", cmd_serve, "serve a model over HTTP with OpenAI's API, continuously batched") \
    X("embed", cmd_embed, "train the dense retrieval encoder; embed a store's passages (embed train|index)") \
    X("eval", cmd_eval, "evaluate retrieval (BM25, dense, hybrid) on the shared dev sets (eval retrieval); a model's answers (eval answers)") \
    X("route", cmd_route, "train, evaluate and ask the source router (route train|eval|top|ask)") \
    X("evidence", cmd_evidence, "the evidence (passages, sources, citation ids) the assistant would use") \
    X("sft", cmd_sft, "build instruction-tuning examples in the prompt format (sft build); train with train --sft") \
    X("feedback", cmd_feedback, "shoppers' votes on chat answers as KTO/DPO JSON Lines (feedback export), counts (feedback stats)")

#endif
