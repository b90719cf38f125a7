// prepare.c: the data tool. Builds the text corpus, the tokenizer and the token shards that
// train.c reads. Run `./prepare help` or `./prepare COMMAND --help`.
//   generate         write the built-in synthetic corpus (storygen.c) as V2 text
//   train-tokenizer  learn BPE merges from V2 text, JSON shards or TinyStories_all_data.tar.gz
//   encode           stories -> token shards (train/validation split, or one shard)
//   info             print the header of a shard or a tokenizer
// Errors print "error: <file or flag>: <what>" and exit with status 1.
#define _XOPEN_SOURCE 700   // POSIX 2008 + XSI: popen/pclose (to stream .tar.gz inputs through tar), realpath
#include "data.c"
#include "storygen.c"
#include <sys/wait.h>
#include <time.h>

// ----------------------------------------------------------------------------
// progress: one line on stderr about every second, and a summary at the end

typedef struct {
    const char *what;
    double start, last;
} Progress;

double now_seconds(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_start(Progress *p, const char *what) { p->what = what; p->start = p->last = now_seconds(); }

void progress_print(Progress *p, uint64_t stories, uint64_t bytes, int final) {
    double t = now_seconds();
    if (!final && t - p->last < 1.0) return;
    p->last = t;
    double dt = t - p->start > 1e-9 ? t - p->start : 1e-9;
    fprintf(stderr, "%s: %llu stories, %.1f MB in %.1f s (%.0f stories/s, %.1f MB/s)%s\n", p->what,
            (unsigned long long)stories, bytes / 1e6, dt, stories / dt, bytes / 1e6 / dt, final ? ", done" : "");
}

// ----------------------------------------------------------------------------
// inputs: V2 text, .json records, or a .tar.gz of .json files streamed through `tar -xzO`

int read_tar_json(const char *path, StoryFn fn, void *ctx, StoryStats *st) {
#if defined(_POSIX_C_SOURCE) && _POSIX_C_SOURCE >= 2
    if (file_size(path) < 0) return -1;
    // quote the path for the shell: ' becomes '\''
    StrBuf cmd = {0};
    sb_append(&cmd, "tar -xzOf '", 11);
    for (const char *c = path; *c; c++) {
        if (*c == '\'') sb_append(&cmd, "'\\''", 4);
        else sb_push(&cmd, *c);
    }
    sb_append(&cmd, "'", 2);   // closing quote and the NUL
    FILE *f = popen(cmd.data, "r");
    free(cmd.data);
    if (!f) return fail(path, "cannot run tar to unpack it: %s", strerror(errno));
    char name[4200];
    snprintf(name, sizeof name, "%s (its .json files, concatenated)", path);
    ByteReader *r = xmalloc(sizeof *r);
    reader_init_file(r, f);
    int status = read_json_stories(r, name, fn, ctx, st);
    // tar's status only means something if we read all it wrote: when we stop early (--max-mb,
    // or a JSON error), closing the pipe kills it with SIGPIPE
    int finished = feof(f);
    free(r);
    int tar_status = pclose(f);
    if (finished && tar_status != 0) {
        char detail[sizeof ouro_error];
        snprintf(detail, sizeof detail, "%s", status ? ouro_error : "no error in the JSON it produced");
        return fail(path, "tar could not unpack it (exit status %d): is it a complete gzip-compressed tar of .json files? (%s)",
                    WIFEXITED(tar_status) ? WEXITSTATUS(tar_status) : -1, detail);
    }
    return status;
#else
    (void)fn; (void)ctx; (void)st;
    return fail(path, "this build cannot unpack .tar.gz (no popen); unpack it with tar and pass the .json files");
#endif
}

int read_input(const char *path, StoryFn fn, void *ctx, StoryStats *st) {
    if (path_has_suffix(path, ".tar.gz") || path_has_suffix(path, ".tgz")) return read_tar_json(path, fn, ctx, st);
    return read_stories(path, fn, ctx, st);
}

void print_input_stats(const char *path, const StoryStats *st) {
    fprintf(stderr, "  %s: %llu stories, %.2f MB", path, (unsigned long long)st->stories, st->story_bytes / 1e6);
    if (st->empty) fprintf(stderr, ", %llu empty dropped", (unsigned long long)st->empty);
    if (st->truncated) fprintf(stderr, ", 1 truncated final story dropped (a text must end with a newline)");
    if (st->without_story) fprintf(stderr, ", %llu records without \"story\" skipped", (unsigned long long)st->without_story);
    fprintf(stderr, "\n");
}

// Creates the folders leading to an output path, like mkdir -p ("out/builtin/tok.bin" makes out
// and out/builtin). Failures are left to the write itself, which names the file.
void make_parent_dirs(const char *path) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return;
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(dir, 0777); *p = '/'; }
}

// ----------------------------------------------------------------------------
// flags

#define MAX_INPUTS 1024

int wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

// The value of the flag at argv[*i], advancing *i.
const char *flag_value(int argc, char **argv, int *i, const char *command) {
    if (*i + 1 >= argc) die("%s needs a value (see ./prepare %s --help)", argv[*i], command);
    return argv[++*i];
}

// "--in A B C" and "--in A --in B" both collect inputs.
void collect_inputs(int argc, char **argv, int *i, const char *command, const char **in, int *n_in) {
    const char *first = flag_value(argc, argv, i, command);
    for (const char *v = first; v;) {
        if (*n_in == MAX_INPUTS) die("--in: more than %d input files", MAX_INPUTS);
        in[(*n_in)++] = v;
        v = (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) ? argv[++*i] : NULL;
    }
}

void unknown_flag(const char *flag, const char *command) {
    die("unknown argument '%s' for 'prepare %s' (see ./prepare %s --help)", flag, command, command);
}

void check_parse(int r) { if (r) die("%s", ouro_error); }

// ----------------------------------------------------------------------------
// generate

static const char *GENERATE_USAGE =
    "usage: ./prepare generate --out FILE (--stories N | --mb M) [--seed S]\n"
    "\n"
    "Writes the built-in synthetic corpus (no download needed) in the TinyStories V2 text format:\n"
    "each story followed by a line <|endoftext|>. Same seed, same file.\n"
    "  --out FILE     output text file (written atomically)\n"
    "  --stories N    number of stories, or\n"
    "  --mb M         stop after about M megabytes (1e6 bytes)\n"
    "  --seed S       random seed (default 1)\n"
    "example:\n"
    "  ./prepare generate --out out/builtin/stories.txt --mb 20 --seed 1\n";

int cmd_generate(int argc, char **argv) {
    if (wants_help(argc, argv)) { fputs(GENERATE_USAGE, stdout); return 0; }
    const char *out = NULL;
    long stories = 0, seed = 1;
    double mb = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) out = flag_value(argc, argv, &i, "generate");
        else if (!strcmp(argv[i], "--stories")) check_parse(parse_long("--stories", flag_value(argc, argv, &i, "generate"), 1, 1000000000L, &stories));
        else if (!strcmp(argv[i], "--mb")) check_parse(parse_double("--mb", flag_value(argc, argv, &i, "generate"), 1e-6, 1e6, &mb));
        else if (!strcmp(argv[i], "--seed")) check_parse(parse_long("--seed", flag_value(argc, argv, &i, "generate"), 0, 0x7FFFFFFFL, &seed));
        else unknown_flag(argv[i], "generate");
    }
    if (!out) die("generate: --out FILE is required (see ./prepare generate --help)");
    if ((stories > 0) == (mb > 0)) die("generate: give exactly one of --stories N or --mb M");
    Rng rng;
    rng_seed(&rng, (uint64_t)seed);
    AtomicFile af;
    make_parent_dirs(out);
    if (atomic_open(&af, out)) die("%s", ouro_error);
    size_t cap = 1 << 16;
    char *buf = xmalloc(cap);
    Progress prog;
    progress_start(&prog, "generate");
    uint64_t n = 0, bytes = 0;
    while (stories > 0 ? n < (uint64_t)stories : bytes < mb * 1e6) {
        size_t len = story_generate(&rng, buf, cap);
        atomic_write(&af, buf, len);
        atomic_write(&af, "\n<|endoftext|>\n", 15);
        n++;
        bytes += len + 15;
        progress_print(&prog, n, bytes, 0);
    }
    free(buf);
    if (atomic_commit(&af)) die("%s", ouro_error);
    progress_print(&prog, n, bytes, 1);
    printf("wrote %s: %llu stories, %.2f MB\n", out, (unsigned long long)n, bytes / 1e6);
    return 0;
}

// ----------------------------------------------------------------------------
// train-tokenizer

static const char *TRAIN_USAGE =
    "usage: ./prepare train-tokenizer --in FILE... --vocab V --out TOKENIZER [--max-mb M]\n"
    "\n"
    "Learns a byte-level BPE vocabulary of V tokens (256 bytes, <|endoftext|>, V-257 merges).\n"
    "Inputs: V2 text (stories separated by lines <|endoftext|>), .json shards of\n"
    "TinyStories_all_data (records with a \"story\"), or TinyStories_all_data.tar.gz itself.\n"
    "Merges never cross a story boundary. Deterministic: same inputs, same tokenizer.\n"
    "  --in FILE...   one or more inputs (repeat --in or list several files)\n"
    "  --vocab V      vocabulary size, 257..65536 (e.g. 512, 1024, 4096)\n"
    "  --out FILE     tokenizer file to write (atomically)\n"
    "  --max-mb M     train on the first M megabytes of stories only (faster on huge inputs)\n"
    "examples:\n"
    "  ./prepare train-tokenizer --in out/builtin/stories.txt --vocab 1024 --out out/builtin/tok1024.bin\n"
    "  ./prepare train-tokenizer --in TinyStoriesV2-GPT4-train.txt --vocab 4096 --max-mb 200 --out tok4096.bin\n";

typedef struct {
    ChunkCounts counts;
    uint64_t max_bytes, bytes, stories;
    Progress prog;
} TrainFeed;

int train_story(void *ctx, const char *story, size_t len) {
    TrainFeed *tf = ctx;
    if (chunk_counts_add_text(&tf->counts, story, len)) return -1;
    tf->bytes += len;
    tf->stories++;
    progress_print(&tf->prog, tf->stories, tf->bytes, 0);
    return tf->max_bytes && tf->bytes >= tf->max_bytes ? 1 : 0;
}

int cmd_train_tokenizer(int argc, char **argv) {
    if (wants_help(argc, argv)) { fputs(TRAIN_USAGE, stdout); return 0; }
    const char *in[MAX_INPUTS], *out = NULL;
    int n_in = 0, vocab = 0;
    double max_mb = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--in")) collect_inputs(argc, argv, &i, "train-tokenizer", in, &n_in);
        else if (!strcmp(argv[i], "--vocab")) check_parse(parse_int("--vocab", flag_value(argc, argv, &i, "train-tokenizer"), TOKENIZER_FIRST_MERGE, TOKENIZER_MAX_VOCAB, &vocab));
        else if (!strcmp(argv[i], "--out")) out = flag_value(argc, argv, &i, "train-tokenizer");
        else if (!strcmp(argv[i], "--max-mb")) check_parse(parse_double("--max-mb", flag_value(argc, argv, &i, "train-tokenizer"), 1e-6, 1e9, &max_mb));
        else unknown_flag(argv[i], "train-tokenizer");
    }
    if (!n_in) die("train-tokenizer: --in FILE is required (see ./prepare train-tokenizer --help)");
    if (!vocab) die("train-tokenizer: --vocab V is required, e.g. --vocab 1024");
    if (!out) die("train-tokenizer: --out FILE is required, e.g. --out tok%d.bin", vocab);

    TrainFeed tf = {.max_bytes = (uint64_t)(max_mb * 1e6)};
    chunk_counts_init(&tf.counts);
    progress_start(&tf.prog, "train-tokenizer: reading");
    for (int k = 0; k < n_in; k++) {
        StoryStats st = {0};
        if (read_input(in[k], train_story, &tf, &st)) die("%s", ouro_error);
        print_input_stats(in[k], &st);
        if (tf.max_bytes && tf.bytes >= tf.max_bytes) { fprintf(stderr, "  reached --max-mb %g\n", max_mb); break; }
    }
    progress_print(&tf.prog, tf.stories, tf.bytes, 1);
    if (tf.stories == 0) die("train-tokenizer: the inputs hold no story to train on");
    double t0 = now_seconds();
    Tokenizer tok;
    if (tokenizer_train_counts(&tok, &tf.counts, vocab)) die("%s", ouro_error);
    double t_merge = now_seconds() - t0;
    fprintf(stderr, "train-tokenizer: %zu distinct chunks, %d merges in %.2f s\n", tf.counts.n_entries, tok.n_merges, t_merge);
    if (tok.vocab_size < vocab)
        fprintf(stderr, "warning: the text supports only %d merges (no pair left that occurs twice): vocab_size is %d, not %d\n",
                tok.n_merges, tok.vocab_size, vocab);
    make_parent_dirs(out);
    if (tokenizer_save(&tok, out)) die("%s", ouro_error);
    printf("wrote %s: vocab_size %d (%d merges), trained on %llu stories, %.2f MB in %.2f s\n", out, tok.vocab_size,
           tok.n_merges, (unsigned long long)tf.stories, tf.bytes / 1e6, now_seconds() - tf.prog.start);
    tokenizer_free(&tok);
    chunk_counts_free(&tf.counts);
    return 0;
}

// ----------------------------------------------------------------------------
// encode

static const char *ENCODE_USAGE =
    "usage: ./prepare encode --tokenizer TOK --in FILE... (--out FILE | --out-train FILE --out-val FILE\n"
    "                        [--val-fraction F | --val-stories N])\n"
    "\n"
    "Encodes stories into token shards; every story ends with <|endoftext|> (id 256).\n"
    "  --tokenizer TOK     tokenizer from train-tokenizer\n"
    "  --in FILE...        V2 text, .json shards or TinyStories_all_data.tar.gz (format from the name)\n"
    "  --out FILE          everything into one shard (e.g. an official validation file), or\n"
    "  --out-train FILE    training shard and\n"
    "  --out-val FILE      validation shard, split by story so no story text is in both:\n"
    "  --val-fraction F    a story is validation iff a hash of its text is below F (default 0.01);\n"
    "                      order-independent, duplicates stay on one side\n"
    "  --val-stories N     or: the first N distinct stories (and any later copies of them)\n"
    "Shard format: \"OUROSHRD\", uint32 version, uint32 vocab_size, uint64 n_tokens, uint16 tokens.\n"
    "examples:\n"
    "  ./prepare encode --tokenizer tok.bin --in out/builtin/stories.txt --out-train train.bin --out-val val.bin\n"
    "  ./prepare encode --tokenizer tok.bin --in TinyStoriesV2-GPT4-valid.txt --out val.bin\n";

typedef struct {
    const Tokenizer *tok;
    ShardWriter *train, *val;          // val is NULL with --out
    SplitRule split;
    uint16_t *tokens;                  // (cap) encode buffer
    size_t cap;
    uint64_t stories[2], bytes[2], n_tokens[2];   // [0] train (or --out), [1] validation
    Progress prog;
} EncodeFeed;

int encode_story(void *ctx, const char *story, size_t len) {
    EncodeFeed *ef = ctx;
    if (len + 1 > ef->cap) {
        ef->cap = len + 1 > 2 * ef->cap ? len + 1 : 2 * ef->cap;
        free(ef->tokens);
        ef->tokens = xmalloc(ef->cap * sizeof *ef->tokens);
    }
    size_t n = tokenizer_encode(ef->tok, story, len, ef->tokens);
    ef->tokens[n++] = TOKEN_EOT;
    int side = ef->val && split_is_validation(&ef->split, story, len);
    shard_writer_add(side ? ef->val : ef->train, ef->tokens, n);
    ef->stories[side]++;
    ef->bytes[side] += len;
    ef->n_tokens[side] += n;
    progress_print(&ef->prog, ef->stories[0] + ef->stories[1], ef->bytes[0] + ef->bytes[1], 0);
    return 0;
}

void print_shard_summary(const char *path, uint64_t stories, uint64_t bytes, uint64_t n_tokens, int vocab) {
    uint64_t text_tokens = n_tokens - stories;   // without the <|endoftext|> tokens
    printf("wrote %s: %llu stories, %llu tokens (vocab %d), %.3f bytes/token (text only)\n", path,
           (unsigned long long)stories, (unsigned long long)n_tokens, vocab, text_tokens ? (double)bytes / text_tokens : 0.0);
}

int cmd_encode(int argc, char **argv) {
    if (wants_help(argc, argv)) { fputs(ENCODE_USAGE, stdout); return 0; }
    const char *in[MAX_INPUTS], *tok_path = NULL, *out = NULL, *out_train = NULL, *out_val = NULL;
    int n_in = 0;
    double fraction = -1;
    long val_stories = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--in")) collect_inputs(argc, argv, &i, "encode", in, &n_in);
        else if (!strcmp(argv[i], "--tokenizer")) tok_path = flag_value(argc, argv, &i, "encode");
        else if (!strcmp(argv[i], "--out")) out = flag_value(argc, argv, &i, "encode");
        else if (!strcmp(argv[i], "--out-train")) out_train = flag_value(argc, argv, &i, "encode");
        else if (!strcmp(argv[i], "--out-val")) out_val = flag_value(argc, argv, &i, "encode");
        else if (!strcmp(argv[i], "--val-fraction")) check_parse(parse_double("--val-fraction", flag_value(argc, argv, &i, "encode"), 1e-9, 0.999, &fraction));
        else if (!strcmp(argv[i], "--val-stories")) check_parse(parse_long("--val-stories", flag_value(argc, argv, &i, "encode"), 1, 10000000L, &val_stories));
        else unknown_flag(argv[i], "encode");
    }
    if (!tok_path) die("encode: --tokenizer FILE is required (make one with ./prepare train-tokenizer)");
    if (!n_in) die("encode: --in FILE is required (see ./prepare encode --help)");
    if (out && (out_train || out_val)) die("encode: give either --out, or --out-train and --out-val, not both");
    if (!out && !(out_train && out_val)) die("encode: give --out FILE, or both --out-train FILE and --out-val FILE");
    if (out && (fraction >= 0 || val_stories)) die("encode: --val-fraction/--val-stories need --out-train and --out-val");
    if (fraction >= 0 && val_stories) die("encode: give --val-fraction or --val-stories, not both");

    Tokenizer tok;
    if (tokenizer_load(&tok, tok_path)) die("%s", ouro_error);
    ShardWriter train, val;
    EncodeFeed ef = {.tok = &tok, .train = &train, .val = out ? NULL : &val};
    ef.split.fraction = fraction >= 0 ? fraction : 0.01;
    ef.split.max_stories = val_stories;
    make_parent_dirs(out ? out : out_train);
    if (!out) make_parent_dirs(out_val);
    // after the folders exist, so that realpath sees two spellings of one path (a/x.bin and
    // a/../a/x.bin) as the same file: both writers would share one temp file
    if (out_train && same_output(out_train, out_val)) die("encode: --out-train and --out-val are the same file");
    if (shard_writer_open(&train, out ? out : out_train, tok.vocab_size)) die("%s", ouro_error);
    if (!out && shard_writer_open(&val, out_val, tok.vocab_size)) { shard_writer_abort(&train); die("%s", ouro_error); }
    progress_start(&ef.prog, "encode");
    for (int k = 0; k < n_in; k++) {
        StoryStats st = {0};
        if (read_input(in[k], encode_story, &ef, &st)) {
            shard_writer_abort(&train);
            if (!out) shard_writer_abort(&val);
            die("%s", ouro_error);
        }
        print_input_stats(in[k], &st);
    }
    progress_print(&ef.prog, ef.stories[0] + ef.stories[1], ef.bytes[0] + ef.bytes[1], 1);
    if (ef.stories[0] == 0) {
        shard_writer_abort(&train);
        if (!out) shard_writer_abort(&val);
        die("encode: no %sstory in the inputs; nothing written", out ? "" : "training ");
    }
    if (shard_writer_close(&train)) { if (!out) shard_writer_abort(&val); die("%s", ouro_error); }
    if (!out && shard_writer_close(&val)) die("%s", ouro_error);
    print_shard_summary(out ? out : out_train, ef.stories[0], ef.bytes[0], ef.n_tokens[0], tok.vocab_size);
    if (!out) {
        print_shard_summary(out_val, ef.stories[1], ef.bytes[1], ef.n_tokens[1], tok.vocab_size);
        if (ef.stories[1] == 0) fprintf(stderr, "warning: the validation split is empty: raise --val-fraction or use --val-stories\n");
    }
    free(ef.tokens);
    split_free(&ef.split);
    tokenizer_free(&tok);
    return 0;
}

// ----------------------------------------------------------------------------
// info

static const char *INFO_USAGE =
    "usage: ./prepare info FILE... [--tokenizer TOK]\n"
    "\n"
    "Prints the header of token shards and tokenizers and checks them fully. With --tokenizer,\n"
    "also the text size of a shard and its compression (bytes per token, <|endoftext|> excluded).\n"
    "examples:\n"
    "  ./prepare info out/builtin/tok1024.bin\n"
    "  ./prepare info out/builtin/train.bin --tokenizer out/builtin/tok1024.bin\n";

// Prints a token's bytes with C escapes for anything unprintable.
void print_piece(const char *p, int n) {
    putchar('"');
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
}

void info_tokenizer(const char *path) {
    Tokenizer t;
    if (tokenizer_load(&t, path)) die("%s", ouro_error);
    int longest = 0, nbytes;
    for (int id = TOKENIZER_FIRST_MERGE; id < t.vocab_size; id++) {
        tokenizer_piece(&t, id, &nbytes);
        if (nbytes > longest) longest = nbytes;
    }
    printf("%s: tokenizer, version %d, vocab_size %d = 256 bytes + <|endoftext|> (id %d) + %d merges; longest token %d bytes\n",
           path, TOKENIZER_VERSION, t.vocab_size, TOKEN_EOT, t.n_merges, longest);
    printf("  first merges:");
    for (int id = TOKENIZER_FIRST_MERGE; id < t.vocab_size && id < TOKENIZER_FIRST_MERGE + 12; id++) {
        const char *p = tokenizer_piece(&t, id, &nbytes);
        putchar(' ');
        print_piece(p, nbytes);
    }
    printf("\n  last merges:");
    for (int id = t.vocab_size - 6 > TOKENIZER_FIRST_MERGE ? t.vocab_size - 6 : TOKENIZER_FIRST_MERGE; id < t.vocab_size; id++) {
        const char *p = tokenizer_piece(&t, id, &nbytes);
        putchar(' ');
        print_piece(p, nbytes);
    }
    printf("\n");
    tokenizer_free(&t);
}

void info_shard(const char *path, const char *tok_path) {
    uint16_t *tokens;
    size_t n;
    int V;
    if (shard_read(path, &tokens, &n, &V)) die("%s", ouro_error);
    size_t stories = 0;
    for (size_t i = 0; i < n; i++) stories += tokens[i] == TOKEN_EOT;
    printf("%s: token shard, version %d, vocab_size %d, %zu tokens, %zu stories (<|endoftext|> tokens), %zu bytes\n",
           path, SHARD_VERSION, V, n, stories, SHARD_HEADER_BYTES + 2 * n);
    if (tok_path) {
        Tokenizer t;
        if (tokenizer_load(&t, tok_path)) die("%s", ouro_error);
        if (t.vocab_size != V) die("%s: vocab_size %d, but the shard %s has %d", tok_path, t.vocab_size, path, V);
        uint64_t bytes = 0;
        int nbytes;
        for (size_t i = 0; i < n; i++)
            if (tokens[i] != TOKEN_EOT) { tokenizer_piece(&t, tokens[i], &nbytes); bytes += (uint64_t)nbytes; }
        printf("  text %.2f MB, %.3f bytes/token (<|endoftext|> excluded)\n", bytes / 1e6,
               n > stories ? (double)bytes / (double)(n - stories) : 0.0);
        tokenizer_free(&t);
    }
    free(tokens);
}

int cmd_info(int argc, char **argv) {
    if (wants_help(argc, argv) || argc == 0) { fputs(INFO_USAGE, argc ? stdout : stderr); return argc ? 0 : 1; }
    const char *files[MAX_INPUTS], *tok_path = NULL;
    int n_files = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer")) tok_path = flag_value(argc, argv, &i, "info");
        else if (!strncmp(argv[i], "--", 2)) unknown_flag(argv[i], "info");
        else if (n_files < MAX_INPUTS) files[n_files++] = argv[i];
        else die("info: at most %d files", MAX_INPUTS);
    }
    if (!n_files) die("info: give at least one FILE (see ./prepare info --help)");
    for (int k = 0; k < n_files; k++) {
        char magic[8] = {0};
        if (file_size(files[k]) < 0) die("%s", ouro_error);
        FILE *f = fopen(files[k], "rb");
        if (!f) die("%s: cannot open: %s", files[k], strerror(errno));
        size_t got = fread(magic, 1, 8, f);
        fclose(f);
        if (got == 8 && !memcmp(magic, TOKENIZER_MAGIC, 8)) info_tokenizer(files[k]);
        else if (got == 8 && !memcmp(magic, SHARD_MAGIC, 8)) info_shard(files[k], tok_path);
        else die("%s: neither a tokenizer (OUROTOKN) nor a token shard (OUROSHRD)", files[k]);
    }
    return 0;
}

// ----------------------------------------------------------------------------

static const char *USAGE =
    "usage: ./prepare COMMAND [FLAGS]   (./prepare COMMAND --help for details)\n"
    "  generate         write the built-in synthetic TinyStories-like corpus (no download needed)\n"
    "  train-tokenizer  learn a byte-level BPE tokenizer from stories\n"
    "  encode           stories -> token shards for train.c (train/validation split)\n"
    "  info             print and check a shard or tokenizer file\n"
    "built-in corpus, end to end:\n"
    "  ./prepare generate --out out/builtin/stories.txt --mb 20\n"
    "  ./prepare train-tokenizer --in out/builtin/stories.txt --vocab 1024 --out out/builtin/tok1024.bin\n"
    "  ./prepare encode --tokenizer out/builtin/tok1024.bin --in out/builtin/stories.txt \\\n"
    "      --out-train out/builtin/train.bin --out-val out/builtin/val.bin\n"
    "real TinyStories (needs internet): sh tinystories/download.sh\n";

#ifndef TESTING
int main(int argc, char **argv) {
    if (argc < 2) { fputs(USAGE, stderr); return 1; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) { fputs(USAGE, stdout); return 0; }
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(cmd, "train-tokenizer")) return cmd_train_tokenizer(argc - 2, argv + 2);
    if (!strcmp(cmd, "encode")) return cmd_encode(argc - 2, argv + 2);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    die("unknown command '%s' (commands: generate, train-tokenizer, encode, info; see ./prepare help)", cmd);
}
#endif
