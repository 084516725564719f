/*
 * Embeds oxiida through include/oxiida.h and liboxiida: registers callbacks,
 * runs workflows that call them (in `para` too), checks errors, and frees
 * everything. Used by core/tests/embed.rs (also under valgrind) and by the
 * `calls` benchmark.
 *
 * usage: embed check [PLUGIN]   run the checks; PLUGIN: a plugin spec to load
 *        embed loop N           N sequential calls to a callback
 *        embed bench N          the same, printing microseconds per call
 *        embed exec SPEC        load a process plugin (SPEC: exec:node=.../testing.js,
 *                               the Node kit's test fixture) and run workflows calling it
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oxiida.h"

static const oxiida_host *H;

typedef struct {
    pthread_mutex_t lock;
    long calls;
    int destroyed;
} counter;

static int32_t square(void *data, const oxiida_value *args, oxiida_value **result, char *error, size_t cap) {
    counter *c = data;
    const oxiida_value *x = H->item(args, 0);
    if (H->kind(x) != OXIIDA_INT) {
        snprintf(error, cap, "square takes an Int");
        return -1;
    }
    pthread_mutex_lock(&c->lock);
    c->calls++;
    pthread_mutex_unlock(&c->lock);
    *result = H->new_int(H->as_int(x) * H->as_int(x));
    return 0;
}

static void destroy_counter(void *data) { ((counter *)data)->destroyed = 1; }

/* scale(x, factor = 2): registered with oxiida_runtime_register_kw. The
 * keyword arguments are a Map, empty (never NULL) when the call passes none. */
static int32_t scale(void *data, const oxiida_value *args, const oxiida_value *kwargs, oxiida_value **result, char *error,
                     size_t cap) {
    int64_t factor = 2;
    size_t i, len;
    (void)data;
    if (H->kind(kwargs) != OXIIDA_MAP) {
        snprintf(error, cap, "scale: the keyword arguments are not a Map");
        return -1;
    }
    for (i = 0; i < H->len(kwargs); i++) {
        const char *key = H->key(kwargs, i, &len);
        if (len == 6 && memcmp(key, "factor", 6) == 0 && H->kind(H->item(kwargs, i)) == OXIIDA_INT) {
            factor = H->as_int(H->item(kwargs, i));
        } else {
            snprintf(error, cap, "scale takes one Int keyword argument, `factor`, not `%.*s`", (int)len, key);
            return -1;
        }
    }
    *result = H->new_int(H->as_int(H->item(args, 0)) * factor);
    return 0;
}

/* Returns true once two calls are inside at the same time (10 s at most). */
static pthread_mutex_t meet_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t meet_cond = PTHREAD_COND_INITIALIZER;
static int meet_count = 0;

static int32_t meet(void *data, const oxiida_value *args, oxiida_value **result, char *error, size_t cap) {
    struct timespec until;
    int met = 1;
    (void)data;
    (void)args;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&meet_lock);
    meet_count++;
    pthread_cond_broadcast(&meet_cond);
    while (meet_count % 2 != 0 && met) {
        if (pthread_cond_timedwait(&meet_cond, &meet_lock, &until) == ETIMEDOUT) met = 0;
    }
    pthread_mutex_unlock(&meet_lock);
    if (!met) {
        snprintf(error, cap, "meet: the other call never came");
        return -1;
    }
    *result = H->new_bool(1);
    return 0;
}

static int32_t refuse(void *data, const oxiida_value *args, oxiida_value **result, char *error, size_t cap) {
    size_t len = 0;
    const char *why = H->as_string(H->item(args, 0), &len);
    (void)data;
    (void)result;
    snprintf(error, cap, "refused: %.*s", (int)len, why ? why : "");
    return -1;
}

static int failures = 0;
#define EXPECT(cond)                                                  \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "embed.c:%d: failed: %s\n", __LINE__, #cond); \
            failures++;                                               \
        }                                                             \
    } while (0)

static int run(oxiida_runtime *rt, const char *src, oxiida_error **err) {
    return oxiida_runtime_run(rt, src, strlen(src), "embedded.ox", err);
}

static oxiida_runtime *setup(counter *c) {
    oxiida_runtime *rt = oxiida_runtime_new();
    oxiida_error *err = NULL;
    H = oxiida_host_routines();
    if (!rt) return NULL;
    EXPECT(oxiida_runtime_register(rt, "square", square, c, destroy_counter, &err) == 0);
    EXPECT(oxiida_runtime_register(rt, "meet", meet, NULL, NULL, &err) == 0);
    EXPECT(oxiida_runtime_register(rt, "refuse", refuse, NULL, NULL, &err) == 0);
    EXPECT(oxiida_runtime_register(rt, "square", square, c, NULL, &err) == -1);
    EXPECT(err && strstr(oxiida_error_message(err), "already registered"));
    oxiida_error_free(err);
    return rt;
}

/* What the header promises about NULL, and the version-1 name of
 * oxiida_error_free, which stays exported as a deprecated alias. */
static void check_null_and_aliases(void) {
    size_t len = 7;
    EXPECT(H->kind(NULL) == OXIIDA_NIL && H->len(NULL) == 0 && H->as_int(NULL) == 0 && H->item(NULL, 0) == NULL);
    EXPECT(H->as_string(NULL, &len) == NULL && len == 0 && H->key(NULL, 0, NULL) == NULL);
    H->value_free(NULL);
    EXPECT(strcmp(oxiida_error_message(NULL), "(no error)") == 0 && oxiida_error_stage(NULL) == OXIIDA_ERROR_USAGE);
    oxiida_error_free(NULL);
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    {
        oxiida_runtime *rt = oxiida_runtime_new();
        oxiida_error *err = NULL;
        EXPECT(rt && oxiida_runtime_load_plugin(rt, "/no/such/plugin.so", &err) == -1 && err != NULL);
        oxiida_error_delete(err);
        oxiida_runtime_free(rt);
    }
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
}

static int check(const char *plugin) {
    counter c = {PTHREAD_MUTEX_INITIALIZER, 0, 0}, spare = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    oxiida_runtime *rt = setup(&c);
    oxiida_error *err = NULL;
    if (!rt) return 1;
    check_null_and_aliases();

    /* A failed register keeps nothing: the caller's user data is not destroyed. */
    EXPECT(oxiida_runtime_register(rt, "square", square, &spare, destroy_counter, &err) == -1);
    oxiida_error_free(err);
    err = NULL;

    EXPECT(run(rt, "require square, meet;\nx = square(7);\nprint x;\npara { a = meet(); b = meet(); }\nprint a and b;\n", &err) == 0);
    EXPECT(c.calls == 1);

    /* Keyword arguments: to a callback registered for them, and refused
     * before running for one registered without. */
    EXPECT(oxiida_runtime_register_kw(rt, "scale", scale, NULL, NULL, &err) == 0);
    EXPECT(oxiida_runtime_register_kw(rt, "square", scale, NULL, NULL, &err) == -1);
    EXPECT(err && strstr(oxiida_error_message(err), "already registered"));
    oxiida_error_free(err);
    err = NULL;
    EXPECT(oxiida_runtime_register_kw(rt, "nothing", NULL, NULL, NULL, &err) == -1);
    oxiida_error_free(err);
    err = NULL;
    EXPECT(run(rt, "require scale;\nprint scale(3);\nprint scale(3, factor = 10);\n", &err) == 0);
    EXPECT(run(rt, "require scale;\nx = scale(3, factr = 10);\n", &err) == -1);
    EXPECT(oxiida_error_stage(err) == OXIIDA_ERROR_RUNTIME);
    EXPECT(err && strstr(oxiida_error_message(err), "scale takes one Int keyword argument, `factor`, not `factr`") != NULL);
    oxiida_error_free(err);
    err = NULL;
    EXPECT(run(rt, "require square;\nprint 1;\nx = square(3, factor = 2);\n", &err) == -1);
    EXPECT(oxiida_error_stage(err) == OXIIDA_ERROR_RESOLVE && oxiida_error_line(err) == 3);
    EXPECT(err && strstr(oxiida_error_report(err), "register it with oxiida_runtime_register_kw") != NULL);
    oxiida_error_free(err);
    err = NULL;

    EXPECT(run(rt, "require refuse;\nx = 1;\ny = refuse(\"no way\");\n", &err) == -1);
    EXPECT(oxiida_error_stage(err) == OXIIDA_ERROR_RUNTIME);
    EXPECT(oxiida_error_line(err) == 3 && oxiida_error_column(err) == 5);
    EXPECT(strstr(oxiida_error_message(err), "refused: no way") != NULL);
    EXPECT(strstr(oxiida_error_report(err), "embedded.ox:3:5") != NULL);
    oxiida_error_free(err);
    err = NULL;

    EXPECT(run(rt, "print 1;\nx = ;\n", &err) == -1);
    EXPECT(oxiida_error_stage(err) == OXIIDA_ERROR_SYNTAX && oxiida_error_line(err) == 2 && oxiida_error_column(err) == 5);
    oxiida_error_free(err);
    err = NULL;

    EXPECT(run(rt, "require nothing_here;\n", &err) == -1);
    EXPECT(oxiida_error_stage(err) == OXIIDA_ERROR_RESOLVE);
    oxiida_error_free(err);
    err = NULL;

    EXPECT(oxiida_runtime_load_plugin(rt, "/no/such/plugin.so", &err) == -1);
    EXPECT(oxiida_error_stage(err) == OXIIDA_ERROR_USAGE);
    oxiida_error_free(err);
    err = NULL;
    if (plugin) {
        char again[4096];
        EXPECT(oxiida_runtime_load_plugin(rt, plugin, &err) == 0);
        EXPECT(run(rt, "require add, square;\nprint add(square(3), 1);\n", &err) == 0);
        EXPECT(run(rt, "require greet;\nprint greet(\"you\", greeting = \"Hi\");\n", &err) == 0);
        /* The same plugin twice, even with another config, is an error naming it. */
        snprintf(again, sizeof again, "%s=Other", plugin);
        EXPECT(oxiida_runtime_load_plugin(rt, again, &err) == -1);
        EXPECT(err && oxiida_error_stage(err) == OXIIDA_ERROR_USAGE);
        EXPECT(err && strstr(oxiida_error_message(err), "plugin `example` is already loaded") != NULL);
        oxiida_error_free(err);
        err = NULL;
        EXPECT(run(rt, "require add;\nx = add(1, 2);\n", &err) == 0);
    }

    oxiida_runtime_free(rt);
    EXPECT(c.destroyed == 1);
    EXPECT(spare.destroyed == 0);
    return failures != 0;
}

static int loop(long n, int bench) {
    counter c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    oxiida_runtime *rt = setup(&c);
    oxiida_error *err = NULL;
    char src[256];
    struct timespec t0, t1;
    double with, without;
    if (!rt) return 1;
    snprintf(src, sizeof src, "require square;\ni = 0;\nt = 0;\nwhile (i < %ld) { t = t + square(i); i = i + 1; }\nprint t;\n", n);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    EXPECT(run(rt, src, &err) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    with = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    EXPECT(c.calls == n);
    if (bench) {
        snprintf(src, sizeof src, "i = 0;\nt = 0;\nwhile (i < %ld) { t = t + i * i; i = i + 1; }\n", n);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        EXPECT(run(rt, src, &err) == 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        without = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("%ld calls to a C callback through liboxiida: %.2f us per call\n", n, (with - without) * 1e6 / (double)n);
    }
    oxiida_error_free(err);
    oxiida_runtime_free(rt);
    return failures != 0;
}

/* A process plugin in a C host: calls cross, a crash fails the call with
 * the plugin's exit status, and the runtime lives on, its next workflow
 * starting a fresh plugin process. SIGPIPE keeps its default action here,
 * as in most C programs: writing to the dead plugin must not kill us. */
static int exec_plugin(const char *spec) {
    oxiida_runtime *rt = oxiida_runtime_new();
    oxiida_error *err = NULL;
    EXPECT(rt && oxiida_runtime_load_plugin(rt, spec, &err) == 0);
    EXPECT(run(rt, "require add, echo from testing;\nprint add(40, 2);\nprint echo([1, \"two\", {\"k\": 3.5}]);\n", &err) == 0);
    EXPECT(run(rt, "require exit_now;\nexit_now(5);\n", &err) == -1);
    EXPECT(err && oxiida_error_stage(err) == OXIIDA_ERROR_RUNTIME);
    EXPECT(err && strstr(oxiida_error_message(err), "process plugin `testing` exited with status 5 during the call") != NULL);
    oxiida_error_free(err);
    err = NULL;
    EXPECT(run(rt, "require add, exit_now;\npara { a = add(1, 1); b = exit_now(6); }\n", &err) == -1);
    oxiida_error_free(err);
    err = NULL;
    EXPECT(run(rt, "require add;\nprint add(1, 2);\n", &err) == 0);
    oxiida_error_free(err);
    oxiida_runtime_free(rt);
    return failures != 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "exec") == 0) return exec_plugin(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "check") == 0) return check(argc >= 3 ? argv[2] : NULL);
    if (argc >= 3 && strcmp(argv[1], "loop") == 0) return loop(atol(argv[2]), 0);
    if (argc >= 3 && strcmp(argv[1], "bench") == 0) return loop(atol(argv[2]), 1);
    fprintf(stderr, "usage: embed check [PLUGIN] | loop N | bench N | exec SPEC\n");
    return 2;
}
