//! The plugin embeds the interpreter it was built against: record where its
//! libpython lives, so loading the plugin finds it without LD_LIBRARY_PATH.

use std::process::Command;

fn main() {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let script = "import sys, sysconfig; print(sysconfig.get_config_var('LIBDIR') or ''); print(sys.executable)";
    let out = Command::new(&python).args(["-c", script]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let mut lines = text.lines();
    let libdir = lines.next().unwrap_or("").trim();
    if !libdir.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    }
    // Embedded under the CLI, sys.executable is the oxiida binary: `=f=`
    // workers then use the interpreter the plugin was built against.
    println!("cargo:rustc-env=OXIIDA_BUILD_PYTHON={}", lines.next().unwrap_or("python3").trim());
}
