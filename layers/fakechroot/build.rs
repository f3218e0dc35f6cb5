// execl/execle/execlp are C-variadic: defining them needs `c_variadic` (unstable), so a
// few lines of C gather the arguments and call the Rust exec path.
fn main() {
    println!("cargo:rerun-if-changed=src/execl.c");
    cc::Build::new()
        .file("src/execl.c")
        .warnings(true)
        .compile("scar_execl");
}
