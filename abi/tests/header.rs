//! `include/oxiida.h` and this crate describe the same ABI: a C program
//! compiled against the header prints every size, offset and constant, and
//! they must equal the Rust definitions. The header must also compile
//! cleanly as C99 and as C++.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use oxiida_abi::*;

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../include")
}

fn compiler(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.into())
}

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include "oxiida.h"
#define S(t) printf(#t " %zu\n", sizeof(t));
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(t, f));
#define C(c) printf(#c " %lu\n", (unsigned long)(c));
int main(void) {
    S(oxiida_message) O(oxiida_message, mode) O(oxiida_message, name) O(oxiida_message, name_len)
    O(oxiida_message, args) O(oxiida_message, args_len) O(oxiida_message, kwargs) O(oxiida_message, kwargs_len)
    S(oxiida_reply) O(oxiida_reply, status) O(oxiida_reply, value) O(oxiida_reply, value_len) O(oxiida_reply, message)
    O(oxiida_reply, message_len) O(oxiida_reply, traceback) O(oxiida_reply, traceback_len) O(oxiida_reply, host_owned)
    O(oxiida_reply, plugin_data) O(oxiida_reply, ran_by)
    S(oxiida_host) O(oxiida_host, decode) O(oxiida_host, value_free) O(oxiida_host, kind) O(oxiida_host, as_bool)
    O(oxiida_host, as_int) O(oxiida_host, as_float) O(oxiida_host, as_string) O(oxiida_host, len) O(oxiida_host, item)
    O(oxiida_host, key) O(oxiida_host, new_nil) O(oxiida_host, new_bool) O(oxiida_host, new_int) O(oxiida_host, new_float)
    O(oxiida_host, new_string) O(oxiida_host, new_array) O(oxiida_host, new_map) O(oxiida_host, push) O(oxiida_host, insert)
    O(oxiida_host, reply_value) O(oxiida_host, reply_error) O(oxiida_host, new_handle) O(oxiida_host, handle_id) O(oxiida_host, handle_type)
    S(oxiida_plugin) O(oxiida_plugin, name) O(oxiida_plugin, capabilities) O(oxiida_plugin, session_new)
    O(oxiida_plugin, session_free) O(oxiida_plugin, resolve) O(oxiida_plugin, call) O(oxiida_plugin, reply_free) O(oxiida_plugin, handle_release) O(oxiida_plugin, session_cancel) O(oxiida_plugin, fingerprint)
    C(OXIIDA_ABI_VERSION) C(OXIIDA_ABI_MIN_COMPATIBLE) C(OXIIDA_NIL) C(OXIIDA_BOOL) C(OXIIDA_INT) C(OXIIDA_FLOAT)
    C(OXIIDA_STRING) C(OXIIDA_ARRAY) C(OXIIDA_MAP) C(OXIIDA_HANDLE) C(OXIIDA_HANDLE_EXT) C(OXIIDA_HANDLE_TYPE_MAX) C(OXIIDA_MODE_THREAD) C(OXIIDA_MODE_PROCESS) C(OXIIDA_STATUS_OK)
    C(OXIIDA_STATUS_NOT_FOUND) C(OXIIDA_STATUS_BAD_ARGUMENTS) C(OXIIDA_STATUS_RAISED) C(OXIIDA_STATUS_WORKER_CRASHED)
    C(OXIIDA_STATUS_INTERNAL) C(OXIIDA_STATUS_BAD_RESULT) C(OXIIDA_CAP_CONCURRENT_CALLS) C(OXIIDA_CAP_PROCESS_MODE) C(OXIIDA_CAP_KEYWORDS) C(OXIIDA_OWNED_VALUE)
    C(OXIIDA_OWNED_MESSAGE) C(OXIIDA_OWNED_TRACEBACK) C(OXIIDA_MAX_DEPTH) C(OXIIDA_ERROR_CAP) C(OXIIDA_FINGERPRINT_CAP) C(OXIIDA_RAN_BY_CAP) C(OXIIDA_ERROR_USAGE)
    C(OXIIDA_ERROR_SYNTAX) C(OXIIDA_ERROR_RESOLVE) C(OXIIDA_ERROR_RUNTIME)
    return 0;
}
"#;

fn rust_side() -> Vec<(String, usize)> {
    macro_rules! o {
        ($c:literal, $t:ty, $($f:ident),*) => {
            vec![(format!("{}", $c), size_of::<$t>()), $((format!("{}.{}", $c, stringify!($f)), offset_of!($t, $f))),*]
        };
    }
    let mut all = Vec::new();
    all.extend(o!("oxiida_message", Message, mode, name, name_len, args, args_len, kwargs, kwargs_len));
    all.extend(o!(
        "oxiida_reply",
        Reply,
        status,
        value,
        value_len,
        message,
        message_len,
        traceback,
        traceback_len,
        host_owned,
        plugin_data,
        ran_by
    ));
    all.extend(o!(
        "oxiida_host",
        Host,
        decode,
        value_free,
        kind,
        as_bool,
        as_int,
        as_float,
        as_string,
        len,
        item,
        key,
        new_nil,
        new_bool,
        new_int,
        new_float,
        new_string,
        new_array,
        new_map,
        push,
        insert,
        reply_value,
        reply_error,
        new_handle,
        handle_id,
        handle_type
    ));
    all.extend(o!(
        "oxiida_plugin",
        Plugin,
        name,
        capabilities,
        session_new,
        session_free,
        resolve,
        call,
        reply_free,
        handle_release,
        session_cancel,
        fingerprint
    ));
    let constants: [(&str, u32); 35] = [
        ("OXIIDA_ABI_VERSION", OXIIDA_ABI_VERSION),
        ("OXIIDA_ABI_MIN_COMPATIBLE", OXIIDA_ABI_MIN_COMPATIBLE),
        ("OXIIDA_NIL", KIND_NIL),
        ("OXIIDA_BOOL", KIND_BOOL),
        ("OXIIDA_INT", KIND_INT),
        ("OXIIDA_FLOAT", KIND_FLOAT),
        ("OXIIDA_STRING", KIND_STRING),
        ("OXIIDA_ARRAY", KIND_ARRAY),
        ("OXIIDA_MAP", KIND_MAP),
        ("OXIIDA_HANDLE", KIND_HANDLE),
        ("OXIIDA_HANDLE_EXT", HANDLE_EXT as u32),
        ("OXIIDA_HANDLE_TYPE_MAX", HANDLE_TYPE_MAX as u32),
        ("OXIIDA_MODE_THREAD", MODE_THREAD),
        ("OXIIDA_MODE_PROCESS", MODE_PROCESS),
        ("OXIIDA_STATUS_OK", Status::Ok.into()),
        ("OXIIDA_STATUS_NOT_FOUND", Status::NotFound.into()),
        ("OXIIDA_STATUS_BAD_ARGUMENTS", Status::BadArguments.into()),
        ("OXIIDA_STATUS_RAISED", Status::Raised.into()),
        ("OXIIDA_STATUS_WORKER_CRASHED", Status::WorkerCrashed.into()),
        ("OXIIDA_STATUS_INTERNAL", Status::Internal.into()),
        ("OXIIDA_STATUS_BAD_RESULT", Status::BadResult.into()),
        ("OXIIDA_CAP_CONCURRENT_CALLS", CAP_CONCURRENT_CALLS),
        ("OXIIDA_CAP_PROCESS_MODE", CAP_PROCESS_MODE),
        ("OXIIDA_CAP_KEYWORDS", CAP_KEYWORDS),
        ("OXIIDA_OWNED_VALUE", OWNED_VALUE),
        ("OXIIDA_OWNED_MESSAGE", OWNED_MESSAGE),
        ("OXIIDA_OWNED_TRACEBACK", OWNED_TRACEBACK),
        ("OXIIDA_MAX_DEPTH", MAX_DEPTH as u32),
        ("OXIIDA_ERROR_CAP", ERROR_CAP as u32),
        ("OXIIDA_FINGERPRINT_CAP", FINGERPRINT_CAP as u32),
        ("OXIIDA_RAN_BY_CAP", RAN_BY_CAP as u32),
        ("OXIIDA_ERROR_USAGE", ERROR_USAGE),
        ("OXIIDA_ERROR_SYNTAX", ERROR_SYNTAX),
        ("OXIIDA_ERROR_RESOLVE", ERROR_RESOLVE),
        ("OXIIDA_ERROR_RUNTIME", ERROR_RUNTIME),
    ];
    // Every status the enum knows is in the list above, and no other.
    assert_eq!(Status::ALL.len(), constants.iter().filter(|(n, _)| n.starts_with("OXIIDA_STATUS_")).count());
    all.extend(constants.iter().map(|(n, v)| (n.to_string(), *v as usize)));
    all
}

#[test]
fn header_and_rust_definitions_agree() {
    let dir = std::env::temp_dir().join(format!("oxiida-abi-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&src, PROBE).unwrap();
    let cc = compiler("CC", "cc");
    let built = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I"])
        .arg(include_dir())
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("a C compiler runs");
    assert!(built.status.success(), "{cc} failed:\n{}", String::from_utf8_lossy(&built.stderr));
    let out = Command::new(&exe).output().unwrap();
    let c_side: Vec<(String, usize)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(c_side, rust_side());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn header_compiles_as_cpp() {
    let dir = std::env::temp_dir().join(format!("oxiida-abi-cpp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.cpp");
    std::fs::write(&src, "#include \"oxiida.h\"\nint main() { oxiida_reply r = oxiida_reply(); return (int)r.status; }\n").unwrap();
    let cxx = compiler("CXX", "c++");
    if Command::new(&cxx).arg("--version").output().is_err() {
        eprintln!("note: no C++ compiler ({cxx}); the C++ check of oxiida.h is skipped");
        return;
    }
    let built = Command::new(&cxx)
        .args(["-std=c++11", "-Wall", "-Wextra", "-pedantic", "-Werror", "-fsyntax-only", "-I"])
        .arg(include_dir())
        .arg(&src)
        .output()
        .expect("a C++ compiler runs");
    assert!(built.status.success(), "{cxx} failed:\n{}", String::from_utf8_lossy(&built.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
