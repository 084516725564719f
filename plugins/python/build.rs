//! The plugin embeds the interpreter it was built against: record where its
//! libpython lives, so loading the plugin finds it without LD_LIBRARY_PATH.

use std::process::Command;

fn main() {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let out = Command::new(&python).args(["-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"]).output();
    if let Ok(out) = out {
        let libdir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !libdir.is_empty() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
        }
    }
}
