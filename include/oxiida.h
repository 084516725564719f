/*
 * oxiida.h: the stable C ABI between the oxiida runtime and language plugins
 * (sections 1 to 4), and the C API for embedding oxiida (section 5).
 *
 * A plugin is a shared library exporting one symbol, `oxiida_plugin_init`.
 * The host (the oxiida runtime) calls it with a table of routines, and the
 * plugin returns its own table. A foreign call is one message: a function
 * name plus its arguments as one MessagePack array (and, since version 3,
 * its keyword arguments as one MessagePack map). A plugin written in C
 * needs nothing but this header: the host's routines decode arguments and
 * encode results, so no MessagePack library is required.
 *
 * Versioning: every table starts with `abi_version` and `struct_size`.
 * Fields, functions and constants are only ever appended, never changed or
 * removed, and each addition raises OXIIDA_ABI_VERSION; a reader checks
 * `struct_size` before using a field added after version 1. The host accepts
 * plugins whose `abi_version` lies in [OXIIDA_ABI_MIN_COMPATIBLE,
 * OXIIDA_ABI_VERSION]. A name that is replaced stays, as a deprecated alias.
 *   Version 1: the tables of sections 2 to 4, and section 5.
 *   Version 2: `oxiida_error_free` (`oxiida_error_delete` stays as its
 *     deprecated alias), OXIIDA_MAX_DEPTH (the same limit both ways, 128
 *     levels), OXIIDA_ERROR_CAP. The tables are those of version 1, so
 *     version-1 plugins load unchanged.
 *   Version 3: keyword arguments (`f(x, steps = 100)`): `oxiida_message`
 *     gains `kwargs` and `kwargs_len` at its end, OXIIDA_CAP_KEYWORDS, and
 *     section 5 gains `oxiida_callback_kw` and `oxiida_runtime_register_kw`.
 *     Plugins of versions 1 and 2 load unchanged: they read the message's
 *     first fields only, and since they cannot declare OXIIDA_CAP_KEYWORDS
 *     the host never sends them keyword arguments (a workflow that passes
 *     some is refused before it runs).
 *   Version 4: handles (see "Handles" below): the value kind OXIIDA_HANDLE,
 *     MessagePack extension type OXIIDA_HANDLE_EXT, OXIIDA_HANDLE_TYPE_MAX,
 *     OXIIDA_STATUS_BAD_RESULT, `oxiida_host` gains `new_handle`,
 *     `handle_id` and `handle_type` at its end, and `oxiida_plugin` gains
 *     `handle_release`, `session_cancel` and `fingerprint` at its end,
 *     and OXIIDA_FINGERPRINT_CAP. Plugins of versions 1 to 3 load
 *     unchanged: their tables end before `handle_release`, they make no
 *     handles, and the host never sends them one (a workflow that passes a
 *     handle to them fails that call, naming the handle's plugin).
 *   Version 5: `oxiida_reply` gains `ran_by` at its end, and
 *     OXIIDA_RAN_BY_CAP: a plugin may say who ran a call (a worker
 *     process's pid, a remote worker's address) for the host's task
 *     records. Plugins of versions 1 to 4 load unchanged: they never write
 *     it, and the host finds it zeroed (the call ran in its own process).
 *
 * Handles (version 4): a result with no form among the value kinds (a
 * Python DataFrame, a Lua function) may cross as a handle: an id the plugin
 * chooses (a uint64_t that means something only to that plugin's session)
 * and a short type name for messages (`print` shows `<python DataFrame>`).
 * The workflow can keep a handle, put it in Arrays and Maps, and pass it back
 * to functions of the plugin (and session) that made it; the host refuses
 * to send it to any other plugin, and arithmetic, indexing and comparison
 * on it are runtime errors that name its type.
 *  - Ownership: each handle in a reply the plugin sends gives the host one
 *    reference to that id (a plugin returning the same object twice may use
 *    the same id twice: two references). The host gives each reference back
 *    exactly once, by calling `handle_release(session, id)`: as soon as the
 *    workflow drops the last copy of that value, and at the latest before
 *    `session_free`. A handle in a call's arguments is borrowed: the host
 *    keeps its reference for the call's duration and beyond.
 *  - After `session_free` the host never names that session's handles again;
 *    a plugin may free everything it still holds there.
 *  - Threads: `handle_release` may run on any thread, at the same time as
 *    calls on the same session (even in a plugin without
 *    OXIIDA_CAP_CONCURRENT_CALLS: it must only take the plugin's own locks,
 *    and must not call back into the host). It never runs during or after
 *    `session_free`. It must not fail; an unknown id is ignored.
 *
 * Names: a function that makes an object ends in `_new`, the one that ends
 * it in `_free`. Strings are UTF-8 with an explicit length and are NOT
 * NUL-terminated, unless a comment says otherwise.
 *
 * Errors, one convention for the whole header:
 *  - A function that can fail says so by its result: an `int32_t` that is 0
 *    on success and -1 on failure, a pointer that is NULL on failure, or a
 *    `uint32_t` status (OXIIDA_STATUS_OK or the error's kind).
 *  - The reason, toward the host (from plugins and callbacks): written into
 *    the caller's buffer `error` of `error_cap` bytes as a NUL-terminated,
 *    possibly truncated message (the host always passes OXIIDA_ERROR_CAP
 *    bytes), or into the reply (`reply_error`); nothing is allocated for it.
 *    Toward an embedding program (section 5): a new `oxiida_error` stored in
 *    `*error` when `error` is not NULL, which the caller frees with
 *    `oxiida_error_free`.
 *  - Who frees what: whoever allocated, except where a comment says a
 *    function "consumes" or "takes ownership of" an argument, which it then
 *    does whether it succeeds or fails. Borrowed pointers live as long as
 *    the object they were read from.
 *  - No function of the host or of liboxiida crashes, aborts or unwinds on
 *    bad input, NULL included (see each function for what NULL means).
 */
#ifndef OXIIDA_H
#define OXIIDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Section 1: versions and constants                                         */
/* ------------------------------------------------------------------------ */

/** The ABI version this header describes (see "Versioning" above). */
#define OXIIDA_ABI_VERSION 5
/** The oldest plugin ABI version a host built from this header accepts. */
#define OXIIDA_ABI_MIN_COMPATIBLE 1

/** The name of the one symbol a plugin exports. */
#define OXIIDA_PLUGIN_INIT_SYMBOL "oxiida_plugin_init"

/** How deeply a value crossing the ABI may nest: each Array or Map is one
 *  level (`[[1]]` is 2 levels, `1` is 0). The same limit holds both ways:
 *  the host never sends a deeper value (the arguments' Array is a level, so
 *  an argument nests at most OXIIDA_MAX_DEPTH - 1 levels; a deeper one fails
 *  the call with OXIIDA_STATUS_BAD_ARGUMENTS before the plugin sees it),
 *  `decode` accepts every value up to the limit, and `reply_value` refuses a
 *  deeper result (see there), so what the host encoded is never refused as
 *  malformed. */
#define OXIIDA_MAX_DEPTH 128u

/** The size of every error buffer the host (or liboxiida) passes as `error`,
 *  NUL included: messages longer than OXIIDA_ERROR_CAP - 1 bytes are cut.
 *  Write at most `error_cap` bytes; do not assume this value. The host reads
 *  up to the first NUL, and never past the buffer when there is none. */
#define OXIIDA_ERROR_CAP 1024u

/** (Version 4.) The size of the buffer the host hands
 *  `oxiida_plugin.fingerprint`: a fingerprint is at most this many bytes
 *  (a SHA-256 digest fits twice). */
#define OXIIDA_FINGERPRINT_CAP 64u

/** (Version 5.) The size of `oxiida_reply.ran_by`, NUL included. */
#define OXIIDA_RAN_BY_CAP 64u

#if defined(__GNUC__) || defined(__clang__)
#define OXIIDA_DEPRECATED(why) __attribute__((deprecated(why)))
#else
#define OXIIDA_DEPRECATED(why)
#endif

/** Value kinds, as returned by `oxiida_host.kind`. */
#define OXIIDA_NIL 0u
#define OXIIDA_BOOL 1u
#define OXIIDA_INT 2u
#define OXIIDA_FLOAT 3u
#define OXIIDA_STRING 4u
#define OXIIDA_ARRAY 5u
#define OXIIDA_MAP 6u
/** (Version 4.) A handle: read it with `handle_id` and `handle_type`. */
#define OXIIDA_HANDLE 7u

/** (Version 4.) The MessagePack extension type of a handle. Its data is the
 *  id (8 bytes, big-endian) followed by the type name (UTF-8, at most
 *  OXIIDA_HANDLE_TYPE_MAX bytes, not NUL-terminated). Another extension
 *  type is malformed. */
#define OXIIDA_HANDLE_EXT 1
/** (Version 4.) The longest type name a handle carries, in bytes. */
#define OXIIDA_HANDLE_TYPE_MAX 64u

/** Call modes: `f(x)` is THREAD, `=f=(x)` is PROCESS. */
#define OXIIDA_MODE_THREAD 0u
#define OXIIDA_MODE_PROCESS 1u

/** Reply statuses. Anything but OK is an error of that kind. */
#define OXIIDA_STATUS_OK 0u
#define OXIIDA_STATUS_NOT_FOUND 1u
#define OXIIDA_STATUS_BAD_ARGUMENTS 2u
#define OXIIDA_STATUS_RAISED 3u
#define OXIIDA_STATUS_WORKER_CRASHED 4u
#define OXIIDA_STATUS_INTERNAL 5u
/** (Version 4.) The function ran, but its result cannot cross back; the
 *  message says what and why ("cannot return set from `f`: ...") and is
 *  shown as it is. Plugins of earlier versions answer BAD_ARGUMENTS. */
#define OXIIDA_STATUS_BAD_RESULT 6u

/** Plugin capabilities (`oxiida_plugin.capabilities`, a bit set). */
/** One session may run several `call`s at the same time, on different threads. */
#define OXIIDA_CAP_CONCURRENT_CALLS (1u << 0)
/** The plugin runs OXIIDA_MODE_PROCESS calls isolated from the session's
 *  state: in a separate process (the Python plugin's worker pool) or on a
 *  fresh interpreter state (the Lua plugin). Without this flag the host
 *  fails a `=f=` call to the plugin itself, without calling it. */
#define OXIIDA_CAP_PROCESS_MODE (1u << 1)
/** (Version 3.) The plugin reads `oxiida_message.kwargs`: calls to it may
 *  pass keyword arguments (`f(x, steps = 100)`). Without this flag (and in
 *  a plugin whose `abi_version` is below 3, whatever its flags) a workflow
 *  that passes keyword arguments to one of its functions is refused before
 *  it runs, with an error that names the plugin. */
#define OXIIDA_CAP_KEYWORDS (1u << 2)

/** `oxiida_reply.host_owned` bits: parts the host allocated and frees itself. */
#define OXIIDA_OWNED_VALUE (1u << 0)
#define OXIIDA_OWNED_MESSAGE (1u << 1)
#define OXIIDA_OWNED_TRACEBACK (1u << 2)

/* ------------------------------------------------------------------------ */
/* Section 2: messages and replies                                           */
/* ------------------------------------------------------------------------ */

/**
 * One foreign call, built by the host. Everything it points to (the name,
 * the arguments' and the keyword arguments' bytes) is owned by the host and
 * valid only during the `call` that receives it: copy what must outlive it,
 * and never free or write to it.
 */
typedef struct oxiida_message {
    uint32_t struct_size;
    /** OXIIDA_MODE_THREAD or OXIIDA_MODE_PROCESS. */
    uint32_t mode;
    /** The required name, dotted, as the `require` wrote its path:
     *  "math.sqrt". `require a.b as c from p;` sends "a.b": never the alias
     *  `c`, never the plugin's name `p`. */
    const char *name;
    size_t name_len;
    /** The arguments: one MessagePack array. */
    const uint8_t *args;
    size_t args_len;
    /** (Version 3.) The keyword arguments: one MessagePack map from String
     *  keys to values, in the order written (`f(x, steps = 100, tag = "a")`
     *  sends {"steps": 100, "tag": "a"}), or NULL and 0 when the call passes
     *  none. Sent only to a plugin that declares OXIIDA_CAP_KEYWORDS. Read it
     *  like `args` (`decode`, then `len`, `key` and `item`; the map is a
     *  level of nesting, as the arguments' array is, so a value in it nests
     *  at most OXIIDA_MAX_DEPTH - 1 levels). Check `struct_size` first:
     *  read these two fields only when `struct_size >= offsetof(
     *  oxiida_message, kwargs_len) + sizeof(size_t)`. */
    const uint8_t *kwargs;
    size_t kwargs_len;
} oxiida_message;

/**
 * The answer to one call. The host zeroes it and sets `struct_size` before
 * `call`; the plugin fills in the rest. A reply left untouched (status OK,
 * `value` NULL) answers nil. After reading it, the host calls the plugin's
 * `reply_free` (which frees what the plugin allocated), then frees the parts
 * marked in `host_owned` itself. A status the header does not define is an
 * OXIIDA_STATUS_INTERNAL error.
 */
typedef struct oxiida_reply {
    uint32_t struct_size;
    /** OXIIDA_STATUS_OK, or the error's kind. */
    uint32_t status;
    /** With OK: the result, one MessagePack value. */
    const uint8_t *value;
    size_t value_len;
    /** With an error: what went wrong (for RAISED, conventionally "Type: text"). */
    const char *message;
    size_t message_len;
    /** With an error, optional: the foreign traceback. */
    const char *traceback;
    size_t traceback_len;
    /** OXIIDA_OWNED_* bits, set by the host routines that fill a reply. */
    uint32_t host_owned;
    /** Free for the plugin's use, e.g. to find its buffers in `reply_free`. */
    void *plugin_data;
    /** (Version 5.) Who ran the call, as NUL-terminated UTF-8 text: "pid 4242"
     *  for a worker process the plugin runs it in, "tcp://10.0.0.5:40123" for a
     *  remote worker. The host zeroes it; leave it empty for a call run in the
     *  host's own process (the host's task records then name that process).
     *  Write at most OXIIDA_RAN_BY_CAP bytes, the NUL included, and only when
     *  `struct_size >= offsetof(oxiida_reply, ran_by) + OXIIDA_RAN_BY_CAP`
     *  (an older host's reply ends before it). The host reads it after
     *  `call` returns, whatever the status. */
    char ran_by[OXIIDA_RAN_BY_CAP];
} oxiida_reply;

/* ------------------------------------------------------------------------ */
/* Section 3: the host's routines                                            */
/* ------------------------------------------------------------------------ */

/** A value tree owned by the host. Opaque. */
typedef struct oxiida_value oxiida_value;

/**
 * What the host offers every plugin. Every routine is thread-safe and may be
 * called from any thread at any time after `oxiida_plugin_init` returns.
 * None of them fails by crashing. The readers (`kind` to `key`) accept NULL
 * as `value` and answer as for a value of the wrong kind: a wrong kind gives
 * OXIIDA_NIL (from `kind`), 0, 0.0 or NULL; their `len` out-parameter may be
 * NULL. Where a routine takes a value (`push`, `insert`, `reply_value`),
 * NULL means nil; where it takes text, NULL means "".
 */
typedef struct oxiida_host {
    uint32_t abi_version;
    uint32_t struct_size;

    /* -- reading arguments ------------------------------------------------ */

    /** Decodes MessagePack (e.g. `message->args`). Returns NULL if malformed
     *  or nested deeper than OXIIDA_MAX_DEPTH, which the host never sends.
     *  The caller owns the result: free it with `value_free`. */
    oxiida_value *(*decode)(const uint8_t *bytes, size_t len);
    /** Frees a value the caller owns. NULL is ignored. */
    void (*value_free)(oxiida_value *value);
    /** One of OXIIDA_NIL ... OXIIDA_MAP. */
    uint32_t (*kind)(const oxiida_value *value);
    /** 1 for true, 0 otherwise. */
    int32_t (*as_bool)(const oxiida_value *value);
    /** The Int, or 0 for any other kind. */
    int64_t (*as_int)(const oxiida_value *value);
    /** The Float; an Int converts; 0.0 for any other kind. */
    double (*as_float)(const oxiida_value *value);
    /** The String's bytes (borrowed from `value`), its length in `*len`;
     *  NULL (and *len = 0) for any other kind. */
    const char *(*as_string)(const oxiida_value *value, size_t *len);
    /** Items of an Array, entries of a Map, bytes of a String; else 0. */
    size_t (*len)(const oxiida_value *value);
    /** Item `i` of an Array or value of entry `i` of a Map, borrowed from
     *  `value`; NULL when out of range or another kind. */
    const oxiida_value *(*item)(const oxiida_value *value, size_t i);
    /** Key of entry `i` of a Map, borrowed; NULL otherwise. */
    const char *(*key)(const oxiida_value *value, size_t i, size_t *len);

    /* -- building results ------------------------------------------------- */

    /** Each returns a new value the caller owns. */
    oxiida_value *(*new_nil)(void);
    oxiida_value *(*new_bool)(int32_t b);
    oxiida_value *(*new_int)(int64_t i);
    oxiida_value *(*new_float)(double x);
    /** Copies `len` bytes; invalid UTF-8 is replaced by U+FFFD. */
    oxiida_value *(*new_string)(const char *s, size_t len);
    oxiida_value *(*new_array)(void);
    oxiida_value *(*new_map)(void);
    /** Appends `item` to an Array, taking ownership of `item`. Returns 0, or
     *  -1 (and frees `item`) when `array` is not an Array. */
    int32_t (*push)(oxiida_value *array, oxiida_value *item);
    /** Sets `key` in a Map (copied; a repeated key replaces its value),
     *  taking ownership of `item`. Returns 0, or -1 (freeing `item`). */
    int32_t (*insert)(oxiida_value *map, const char *key, size_t key_len, oxiida_value *item);

    /* -- answering a call -------------------------------------------------- */

    /** Answers OK with `value`, which it consumes: encodes it into a buffer
     *  the host owns (marks OXIIDA_OWNED_VALUE). Returns 0. A value nested
     *  deeper than OXIIDA_MAX_DEPTH is not sent: the reply becomes an
     *  OXIIDA_STATUS_BAD_RESULT error saying so (BAD_ARGUMENTS before
     *  version 4), and it returns -1. */
    int32_t (*reply_value)(oxiida_reply *reply, oxiida_value *value);
    /** Answers with an error: copies `message` and `traceback` (which may be
     *  NULL: no traceback) into buffers the host owns. OXIIDA_STATUS_OK as
     *  `status` becomes OXIIDA_STATUS_INTERNAL. Returns 0. */
    int32_t (*reply_error)(oxiida_reply *reply, uint32_t status, const char *message, size_t message_len,
                           const char *traceback, size_t traceback_len);

    /* -- handles (version 4; check `struct_size` before use) --------------- */

    /** A new handle value the caller owns: `id` is the plugin's own, and
     *  `type_name` (copied; cut to OXIIDA_HANDLE_TYPE_MAX bytes; invalid
     *  UTF-8 replaced by U+FFFD) names its type in messages. Putting it in a
     *  reply gives the host one reference (see "Handles" at the top). */
    oxiida_value *(*new_handle)(uint64_t id, const char *type_name, size_t len);
    /** A handle's id; 0 for any other kind. */
    uint64_t (*handle_id)(const oxiida_value *value);
    /** A handle's type name, borrowed from `value`, its length in `*len`;
     *  NULL (and *len = 0) for any other kind. */
    const char *(*handle_type)(const oxiida_value *value, size_t *len);
} oxiida_host;

/* ------------------------------------------------------------------------ */
/* Section 4: the plugin's table                                             */
/* ------------------------------------------------------------------------ */

/**
 * What a plugin offers. It must stay valid and unchanged for the life of the
 * process: plugins are never unloaded. A session is one workflow's private
 * foreign environment; the host makes one per plugin per workflow, so a
 * plugin given twice to one workflow (`--plugin lua=a.lua --plugin
 * lua=b.lua`) is an error that names it, by `name`.
 */
typedef struct oxiida_plugin {
    uint32_t abi_version;
    uint32_t struct_size;
    /** The plugin's name, NUL-terminated, static: what `require f from NAME;` names. */
    const char *name;
    /** OXIIDA_CAP_* bits. */
    uint32_t capabilities;

    /** Makes a session. `config` (may be empty) is the text after `=` in
     *  `--plugin NAME=CONFIG`, e.g. a script path. On success stores the
     *  session in `*session` and returns 0; on failure writes a NUL-terminated
     *  message of at most `error_cap` bytes into `error` and returns -1
     *  (and `session_free` is not called). */
    int32_t (*session_new)(const char *config, size_t config_len, void **session, char *error, size_t error_cap);
    /** Ends a session, once. No call on it is running, and none will start.
     *  It may run on any thread: the one that ends the workflow (the caller
     *  of `oxiida_runtime_run`, `oxiida run`'s main thread), or the worker
     *  thread of the session's last call when that call outlived its
     *  workflow (a cancelled workflow does not wait for its calls). */
    void (*session_free)(void *session);
    /** Whether the session provides `name` (dotted): OXIIDA_STATUS_OK, or
     *  OXIIDA_STATUS_NOT_FOUND with an optional NUL-terminated reason in
     *  `error`. Called before the workflow starts, never during a call. */
    uint32_t (*resolve)(void *session, const char *name, size_t name_len, char *error, size_t error_cap);
    /** Runs one call and fills `reply`. Called on a thread that may block (a
     *  worker thread, or the workflow's own while nothing else in it runs);
     *  concurrently on one session only with OXIIDA_CAP_CONCURRENT_CALLS. */
    void (*call)(void *session, const oxiida_message *message, oxiida_reply *reply);
    /** Frees what the plugin put in `reply` (NULL if it allocates nothing). */
    void (*reply_free)(void *session, oxiida_reply *reply);
    /** (Version 4.) Gives up one reference to the handle `id` of `session`
     *  (see "Handles" at the top for who owns what). May run on any thread,
     *  concurrently with `call` on the same session, never during or after
     *  `session_free`; must not fail, and ignores an unknown id. NULL: the
     *  plugin makes no handles (a handle in one of its replies is then an
     *  OXIIDA_STATUS_INTERNAL error). Read only when `abi_version >= 4`. */
    void (*handle_release)(void *session, uint64_t id);
    /** (Version 4.) The session's workflow is over or cancelled (Ctrl-C, a
     *  failed `para` sibling): calls running on it now should return as soon
     *  as they can, with any error (their results are dropped). It must not
     *  wait for them. Calls that start afterwards run as usual. May run on
     *  any thread, concurrently with `call` and more than once, never during
     *  or after `session_free`. NULL: running calls run to their end (the
     *  session is freed when the last returns). Read only when
     *  `abi_version >= 4`. */
    void (*session_cancel)(void *session);
    /** (Version 4.) What identifies the code behind the function `name`
     *  (dotted, one that `resolve` accepted) in this session, for
     *  `oxiida run --cache`: bytes that change when the function's code
     *  changes and only then (the Python plugin hashes its bytecode,
     *  constants, defaults, closure cells and the functions it calls; the
     *  Lua plugin its dumped bytecode and upvalues). Writes at most
     *  `out_cap` bytes (the host passes OXIIDA_FINGERPRINT_CAP) into `out`,
     *  which the host owns, and returns how many; 0 means "no fingerprint
     *  for this name", and the host then identifies the call by the
     *  plugin's library and config files, as for a plugin without this
     *  routine. Called after `resolve`, on any thread, never during or
     *  after `session_free`, and concurrently with `call` only with
     *  OXIIDA_CAP_CONCURRENT_CALLS; the host asks once per session and
     *  name. It must not fail (return 0 instead). NULL: the plugin gives no
     *  fingerprints (a C plugin: its file's hash is the identity). Read
     *  only when `abi_version >= 4` and `struct_size` covers it. */
    size_t (*fingerprint)(void *session, const char *name, size_t name_len, uint8_t *out, size_t out_cap);
} oxiida_plugin;

/**
 * The entry point, exported as `oxiida_plugin_init`. `host` stays valid for
 * the life of the process. Returns the plugin's table, or NULL after writing
 * a NUL-terminated reason into `error` (at most `error_cap` bytes).
 */
typedef const oxiida_plugin *(*oxiida_plugin_init_fn)(const oxiida_host *host, char *error, size_t error_cap);

/* ------------------------------------------------------------------------ */
/* Section 5: embedding oxiida in a C (or Julia) program: liboxiida          */
/* ------------------------------------------------------------------------ */
/*
 * Link with -loxiida. A runtime holds registered callbacks and loaded
 * plugins and runs workflows one at a time; use one runtime per thread that
 * runs workflows. Errors follow the convention at the top: functions
 * returning int32_t give 0 on success and -1 on failure, after storing a new
 * error in `*error` (when `error` is not NULL) that the caller frees with
 * `oxiida_error_free`. A function that fails keeps nothing it was given.
 */

/** A runtime: registered functions, loaded plugins. Opaque. */
typedef struct oxiida_runtime oxiida_runtime;
/** An error from oxiida. Opaque; owned by whoever received it. */
typedef struct oxiida_error oxiida_error;

/** Error stages, from `oxiida_error_stage` (OXIIDA_ERROR_*, unrelated to
 *  OXIIDA_ERROR_CAP). */
#define OXIIDA_ERROR_USAGE 0u   /* bad argument, plugin that cannot load, ... */
#define OXIIDA_ERROR_SYNTAX 1u
#define OXIIDA_ERROR_RESOLVE 2u /* found before running: undefined names, ... */
#define OXIIDA_ERROR_RUNTIME 3u

/**
 * A foreign function implemented by the embedding program. `args` is an
 * Array (nested at most OXIIDA_MAX_DEPTH levels, itself included), borrowed
 * for the duration of the call; read it with the routines of
 * `oxiida_host_routines()`. On
 * success store a new value in `*result` (the runtime takes ownership; left
 * NULL, the result is nil) and return 0. On failure write a NUL-terminated
 * message of at most `error_cap` (OXIIDA_ERROR_CAP) bytes into `error` and
 * return -1; a value stored in `*result` anyway is freed by the runtime.
 * Thread rules: called on a worker thread, or on the thread running
 * `oxiida_runtime_run` while nothing else in the workflow runs; calls in
 * `para` run at the same time on different threads, so the callback must be
 * thread-safe.
 */
typedef int32_t (*oxiida_callback)(void *user_data, const oxiida_value *args, oxiida_value **result, char *error,
                                   size_t error_cap);

/**
 * (Version 3.) A foreign function that also takes keyword arguments, for
 * `oxiida_runtime_register_kw`. As `oxiida_callback`, plus `kwargs`: a Map
 * of the keyword arguments in the order written, empty (never NULL) when the
 * call passes none, borrowed like `args` for the duration of the call (each
 * value in it nests at most OXIIDA_MAX_DEPTH - 1 levels). Read it with
 * `len`, `key` and `item`.
 */
typedef int32_t (*oxiida_callback_kw)(void *user_data, const oxiida_value *args, const oxiida_value *kwargs,
                                      oxiida_value **result, char *error, size_t error_cap);

/** The host routines (Section 3), for reading arguments and building results
 *  in callbacks. Valid for the life of the process. */
const oxiida_host *oxiida_host_routines(void);

/** A new runtime, or NULL if the system refused a thread or an I/O driver.
 *  Free it with `oxiida_runtime_free`. */
oxiida_runtime *oxiida_runtime_new(void);

/** Frees a runtime (no workflow may be running on it): first waits for any
 *  call that outlived its `oxiida_runtime_run` (see there) to return, then
 *  calls the destructor of every registered callback's user data. NULL is
 *  ignored. */
void oxiida_runtime_free(oxiida_runtime *runtime);

/** Registers `callback` as the foreign function `name` (NUL-terminated;
 *  a dotted name such as "lib.f" is allowed). `destroy` (may be NULL) is
 *  called with `user_data` when the runtime is freed. A name registered twice
 *  is an error. On failure the runtime keeps nothing: `destroy` is never
 *  called, and `user_data` stays the caller's to free. Workflows `require`
 *  it like any foreign function. */
int32_t oxiida_runtime_register(oxiida_runtime *runtime, const char *name, oxiida_callback callback, void *user_data,
                                void (*destroy)(void *user_data), oxiida_error **error);

/** (Version 3.) As `oxiida_runtime_register`, for a callback that takes
 *  keyword arguments (`f(x, steps = 100)`). A function registered with
 *  `oxiida_runtime_register` takes none: a workflow that passes it some is
 *  refused before it runs (OXIIDA_ERROR_RESOLVE), with an error saying to
 *  register it with this function. Both share one set of names. */
int32_t oxiida_runtime_register_kw(oxiida_runtime *runtime, const char *name, oxiida_callback_kw callback,
                                   void *user_data, void (*destroy)(void *user_data), oxiida_error **error);

/** Loads a plugin for later runs: `spec` (NUL-terminated) is a path or a
 *  name, optionally followed by `=CONFIG`, as for `oxiida run --plugin`.
 *  Loading a plugin that this runtime already has (the same `name`, whatever
 *  the path or config) is an error that names it. */
int32_t oxiida_runtime_load_plugin(oxiida_runtime *runtime, const char *spec, oxiida_error **error);

/** Checks and runs a workflow. `source` is UTF-8 of `len` bytes; `file_name`
 *  (NUL-terminated, may be NULL) is what errors show. `print` writes to the
 *  process's standard output. Blocks until the workflow ends. When it fails
 *  or is cancelled, it returns at once with the error: calls still running
 *  on other threads (a callback or a plugin call that has not returned, in a
 *  `para` sibling) are not waited for, and may outlive this function until
 *  `oxiida_runtime_free`, which waits for them. Their results are dropped. */
int32_t oxiida_runtime_run(oxiida_runtime *runtime, const char *source, size_t len, const char *file_name,
                           oxiida_error **error);

/** The error's one-line message, NUL-terminated, owned by the error. The
 *  readers below accept NULL: "(no error)", stage 0, line and column 0. */
const char *oxiida_error_message(const oxiida_error *error);
/** The full report: file:line:col, the source line, a caret, hints. */
const char *oxiida_error_report(const oxiida_error *error);
/** One of OXIIDA_ERROR_*. */
uint32_t oxiida_error_stage(const oxiida_error *error);
/** 1-based line and column in the workflow source; 0 when not about source. */
uint32_t oxiida_error_line(const oxiida_error *error);
uint32_t oxiida_error_column(const oxiida_error *error);
/** Frees an error. NULL is ignored. (Version 2.) */
void oxiida_error_free(oxiida_error *error);
/** The name `oxiida_error_free` had in version 1; the same function. */
OXIIDA_DEPRECATED("use oxiida_error_free") void oxiida_error_delete(oxiida_error *error);

#ifdef __cplusplus
}
#endif

#endif /* OXIIDA_H */
