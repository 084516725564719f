/*
 * An oxiida plugin in C, written against include/oxiida.h alone.
 * Build: cc -shared -fPIC -O2 -I include plugins/c/example.c -o liboxiida_example.so -lpthread
 * Use:   oxiida run --plugin ./liboxiida_example.so=Hello wf.ox
 *
 * Functions: add(a, b), greet(name, greeting = ...) (the keyword argument,
 * when given, replaces the session's greeting), sum(numbers), stats(numbers) -> Map,
 * fail(text) (always an error), slow(ms), rendezvous() (returns once two
 * calls are inside it at the same time: proof that calls overlap), inside()
 * (how many calls were inside it at once during its 50 ms), remember(x)
 * and recall() (a per-session global: one workflow never sees another's).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oxiida.h"

static const oxiida_host *H;

/* The session: per-workflow state. Here, the greeting given as config. */
typedef struct {
    char greeting[64];
    pthread_mutex_t lock; /* guards `remembered` */
    int64_t remembered;
} session;

static int32_t session_new(const char *config, size_t len, void **out, char *error, size_t cap) {
    session *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(error, cap, "out of memory");
        return -1;
    }
    if (len >= sizeof s->greeting) {
        snprintf(error, cap, "the greeting is longer than %zu bytes", sizeof s->greeting - 1);
        free(s);
        return -1;
    }
    pthread_mutex_init(&s->lock, NULL);
    if (len == 0) {
        strcpy(s->greeting, "hello");
    } else {
        memcpy(s->greeting, config, len);
    }
    *out = s;
    return 0;
}

static void session_free(void *sp) {
    session *s = sp;
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const char *const NAMES[] = {"add", "greet", "sum", "stats", "fail", "slow", "rendezvous", "inside", "remember", "recall"};

static int known(const char *name, size_t len) {
    size_t i;
    for (i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        if (strlen(NAMES[i]) == len && memcmp(NAMES[i], name, len) == 0) return 1;
    }
    return 0;
}

static uint32_t resolve(void *s, const char *name, size_t len, char *error, size_t cap) {
    (void)s;
    if (known(name, len)) return OXIIDA_STATUS_OK;
    snprintf(error, cap, "the example plugin has no function `%.*s`", (int)len, name);
    return OXIIDA_STATUS_NOT_FOUND;
}

static void error_reply(oxiida_reply *reply, uint32_t status, const char *text) {
    H->reply_error(reply, status, text, strlen(text), NULL, 0);
}

static int is_number(const oxiida_value *v) {
    uint32_t k = H->kind(v);
    return k == OXIIDA_INT || k == OXIIDA_FLOAT;
}

/* Waits until two calls are inside, for at most ten seconds. */
static pthread_mutex_t meet_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t meet_cond = PTHREAD_COND_INITIALIZER;
static int meet_count = 0;

static int rendezvous(void) {
    struct timespec until;
    int met = 1;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&meet_lock);
    meet_count++;
    pthread_cond_broadcast(&meet_cond);
    while (meet_count % 2 != 0 && met) {
        if (pthread_cond_timedwait(&meet_cond, &meet_lock, &until) == ETIMEDOUT) met = 0;
    }
    pthread_mutex_unlock(&meet_lock);
    return met;
}

/* Counts the calls inside at once, over 50 ms. */
static pthread_mutex_t inside_lock = PTHREAD_MUTEX_INITIALIZER;
static int inside_now = 0;

static int64_t inside(void) {
    struct timespec t = {0, 50000000L};
    int64_t most;
    pthread_mutex_lock(&inside_lock);
    most = ++inside_now;
    pthread_mutex_unlock(&inside_lock);
    nanosleep(&t, NULL);
    pthread_mutex_lock(&inside_lock);
    if (inside_now > most) most = inside_now;
    inside_now--;
    pthread_mutex_unlock(&inside_lock);
    return most;
}

/* The keyword arguments (a Map), or NULL when the call passes none. The
 * fields exist only in messages of ABI version 3 and newer: check the size. */
static oxiida_value *keywords(const oxiida_message *m) {
    if (m->struct_size < offsetof(oxiida_message, kwargs_len) + sizeof(size_t) || !m->kwargs) return NULL;
    return H->decode(m->kwargs, m->kwargs_len);
}

/* The keyword argument `name` in `kwargs`, borrowed; NULL when absent. */
static const oxiida_value *keyword(const oxiida_value *kwargs, const char *name) {
    size_t i, len;
    for (i = 0; i < H->len(kwargs); i++) {
        const char *key = H->key(kwargs, i, &len);
        if (len == strlen(name) && memcmp(key, name, len) == 0) return H->item(kwargs, i);
    }
    return NULL;
}

static void call(void *sp, const oxiida_message *m, oxiida_reply *reply) {
    session *s = sp;
    oxiida_value *args = H->decode(m->args, m->args_len);
    oxiida_value *kwargs = keywords(m);
    size_t n = H->len(args);
    const oxiida_value *a = H->item(args, 0), *b = H->item(args, 1);
    char buf[256];
#define IS(fn) (m->name_len == strlen(fn) && memcmp(m->name, fn, m->name_len) == 0)
    if (IS("add")) {
        if (n != 2 || !is_number(a) || !is_number(b)) {
            error_reply(reply, OXIIDA_STATUS_BAD_ARGUMENTS, "add takes two numbers");
        } else if (H->kind(a) == OXIIDA_INT && H->kind(b) == OXIIDA_INT) {
            H->reply_value(reply, H->new_int(H->as_int(a) + H->as_int(b)));
        } else {
            H->reply_value(reply, H->new_float(H->as_float(a) + H->as_float(b)));
        }
    } else if (IS("greet")) {
        size_t len = 0, glen = strlen(s->greeting), i;
        const char *name = H->as_string(a, &len), *greeting = s->greeting;
        const oxiida_value *given = keyword(kwargs, "greeting");
        int unknown = 0;
        for (i = 0; i < H->len(kwargs); i++) {
            size_t klen;
            const char *key = H->key(kwargs, i, &klen);
            if (!(klen == 8 && memcmp(key, "greeting", 8) == 0)) unknown = 1;
        }
        if (given) greeting = H->as_string(given, &glen);
        if (!name) {
            error_reply(reply, OXIIDA_STATUS_BAD_ARGUMENTS, "greet takes a String");
        } else if (unknown) {
            error_reply(reply, OXIIDA_STATUS_BAD_ARGUMENTS, "greet takes one keyword argument, `greeting`");
        } else if (!greeting) {
            error_reply(reply, OXIIDA_STATUS_BAD_ARGUMENTS, "greet's `greeting` must be a String");
        } else {
            int w = snprintf(buf, sizeof buf, "%.*s, %.*s", (int)glen, greeting, (int)len, name);
            H->reply_value(reply, H->new_string(buf, (size_t)w < sizeof buf ? (size_t)w : sizeof buf - 1));
        }
    } else if (IS("sum") || IS("stats")) {
        double total = 0;
        size_t i, count = H->len(a);
        int ok = H->kind(a) == OXIIDA_ARRAY;
        for (i = 0; ok && i < count; i++) {
            ok = is_number(H->item(a, i));
            total += H->as_float(H->item(a, i));
        }
        if (!ok) {
            error_reply(reply, OXIIDA_STATUS_BAD_ARGUMENTS, "expected an Array of numbers");
        } else if (IS("sum")) {
            H->reply_value(reply, H->new_float(total));
        } else {
            oxiida_value *map = H->new_map(), *items = H->new_array();
            H->insert(map, "count", 5, H->new_int((int64_t)count));
            H->insert(map, "total", 5, H->new_float(total));
            H->push(items, H->new_string("min/max not computed", 20));
            H->push(items, H->new_nil());
            H->push(items, H->new_bool(1));
            H->insert(map, "notes", 5, items);
            H->reply_value(reply, map);
        }
    } else if (IS("fail")) {
        size_t len = 0;
        const char *text = H->as_string(a, &len);
        const char *tb = "  in example.c, function call, branch \"fail\"";
        int w = snprintf(buf, sizeof buf, "ExampleError: %.*s", (int)len, text ? text : "");
        H->reply_error(reply, OXIIDA_STATUS_RAISED, buf, (size_t)w < sizeof buf ? (size_t)w : sizeof buf - 1, tb, strlen(tb));
    } else if (IS("slow")) {
        int64_t ms = H->as_int(a);
        struct timespec t;
        t.tv_sec = (time_t)(ms / 1000);
        t.tv_nsec = (long)(ms % 1000) * 1000000L;
        nanosleep(&t, NULL);
        H->reply_value(reply, H->new_int(ms));
    } else if (IS("remember") || IS("recall")) {
        int64_t value;
        if (IS("remember") && (n != 1 || H->kind(a) != OXIIDA_INT)) {
            error_reply(reply, OXIIDA_STATUS_BAD_ARGUMENTS, "remember takes an Int");
        } else {
            pthread_mutex_lock(&s->lock);
            if (IS("remember")) s->remembered = H->as_int(a);
            value = s->remembered;
            pthread_mutex_unlock(&s->lock);
            H->reply_value(reply, H->new_int(value));
        }
    } else if (IS("inside")) {
        H->reply_value(reply, H->new_int(inside()));
    } else if (IS("rendezvous")) {
        if (rendezvous()) {
            H->reply_value(reply, H->new_bool(1));
        } else {
            error_reply(reply, OXIIDA_STATUS_INTERNAL, "rendezvous: no second call arrived within 10 s");
        }
    } else {
        error_reply(reply, OXIIDA_STATUS_NOT_FOUND, "no such function");
    }
#undef IS
    H->value_free(args);
    H->value_free(kwargs);
}

/* Tests build a second copy under another name, to load two plugins at once. */
#ifndef EXAMPLE_NAME
#define EXAMPLE_NAME "example"
#endif
#ifndef EXAMPLE_CAPS
#define EXAMPLE_CAPS (OXIIDA_CAP_CONCURRENT_CALLS | OXIIDA_CAP_KEYWORDS)
#endif
/* ... and under an older ABI version, as a plugin built before keyword arguments. */
#ifndef EXAMPLE_ABI
#define EXAMPLE_ABI OXIIDA_ABI_VERSION
#endif

static const oxiida_plugin PLUGIN = {
    EXAMPLE_ABI, sizeof(oxiida_plugin), EXAMPLE_NAME, EXAMPLE_CAPS, session_new, session_free, resolve, call, NULL, NULL, NULL, NULL,
};

const oxiida_plugin *oxiida_plugin_init(const oxiida_host *host, char *error, size_t cap) {
    if (host->abi_version < 1) {
        snprintf(error, cap, "this plugin needs oxiida ABI version 1 or newer");
        return NULL;
    }
    H = host;
    return &PLUGIN;
}
