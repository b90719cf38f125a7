# ouro.c: `make` builds everything, `make test` runs every test. See `make help`.
#
#   make PORTABLE=1    no -march=native (a binary that runs on any CPU of the same architecture)
#   make NO_OPENMP=1   single-threaded build without OpenMP (also what happens when the compiler
#                      has no OpenMP); the tests pass either way
#   make CC=clang      another compiler (gcc vectorises our kernels best, so it is the default)

CC = gcc
OPT = -O3 -march=native
ifeq ($(PORTABLE),1)
OPT = -O3
endif
CFLAGS = $(OPT) -std=gnu11 -Wall -Wextra
LDLIBS = -lm

# OpenMP when the compiler supports it
ifneq ($(NO_OPENMP),1)
OMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
endif
ifeq ($(OMP),)
CFLAGS += -Wno-unknown-pragmas
endif

# Every program is one translation unit that includes the .c files it needs (llm.c style),
# so each depends on all sources.
SOURCES = $(wildcard *.c *.h tinystories/*.c)
PROGRAMS = train run prepare test_all test_all64

.PHONY: all test asan clean help download bench demo blas-compare
all: $(PROGRAMS)

train: $(SOURCES)
	$(CC) $(CFLAGS) $(OMP) -o $@ train.c $(LDLIBS)

run: $(SOURCES)
	$(CC) $(CFLAGS) $(OMP) -o $@ run.c $(LDLIBS)

# the data tool of tinystories/ (named prepare: the folder has the natural name)
prepare: $(SOURCES)
	$(CC) $(CFLAGS) -o $@ tinystories/prepare.c $(LDLIBS)

test_all: $(SOURCES)
	$(CC) $(CFLAGS) $(OMP) -o $@ test_all.c $(LDLIBS)

# the same tests in double precision: the gradient check is tight there
test_all64: $(SOURCES)
	$(CC) $(CFLAGS) $(OMP) -DOURO_DOUBLE -o $@ test_all.c $(LDLIBS)

# OpenMP threads sleep while they wait (unless OMP_WAIT_POLICY is set): spinning, the default,
# makes the tests several times slower when another program holds a core
test: test_all test_all64
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive} ./test_all64
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive} ./test_all

# speed: training and decoding tok/s, GFLOP/s, memory, matmul shapes, the machine's FMA peak
benchmark: $(SOURCES)
	$(CC) $(CFLAGS) $(OMP) -o $@ bench.c $(LDLIBS)

bench: benchmark
	./benchmark

# our matmul against a BLAS's sgemm on the same shapes (not part of ouro.c: dev/blas_compare.c),
# for example  make blas-compare CBLAS="-lopenblas"
blas-compare: $(SOURCES) dev/blas_compare.c
	@test -n "$(CBLAS)" || { echo 'make blas-compare needs CBLAS="<flags of a CBLAS>", e.g. CBLAS="-lopenblas"'; exit 2; }
	$(CC) $(CFLAGS) $(OMP) -o blas_compare dev/blas_compare.c $(CBLAS) $(LDLIBS)

# the tests under AddressSanitizer and UndefinedBehaviorSanitizer
asan: $(SOURCES)
	$(CC) -O1 -g -std=gnu11 -Wall -Wextra $(OMP) -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -fno-sanitize-recover=undefined -o test_all_asan test_all.c $(LDLIBS)
	./test_all_asan

# the whole story offline in a few minutes: corpus, tokenizer, Stage I, Stage II, a story, tables
demo: train run prepare
	sh demo.sh

# real TinyStories from the Hugging Face hub (needs internet), prepared into out/tinystories/
download: prepare
	sh tinystories/download.sh

clean:
	rm -f $(PROGRAMS) test_all_asan benchmark blas_compare

help:
	@echo "make            build everything: $(PROGRAMS)"
	@echo "make demo       train a small LoopLM on the built-in corpus and show it thinking (offline, minutes)"
	@echo "make test       run every test (double-precision model tests, then all tests)"
	@echo "make asan       run the tests under AddressSanitizer and UBSan"
	@echo "make bench      measure speed: training and decoding tok/s, GFLOP/s, memory"
	@echo "make blas-compare CBLAS=-lopenblas   our matmul against a BLAS (see dev/blas_compare.c)"
	@echo "make download   fetch real TinyStories (needs internet) and prepare shards in out/tinystories/"
	@echo "make clean      remove what make built"
	@echo "options: PORTABLE=1 (no -march=native), NO_OPENMP=1, CC=..."
