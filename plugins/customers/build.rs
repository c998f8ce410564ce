//! Cargo runs this again when a file is added to `sql/`, so that `sql_dir!` sees it.
fn main() {
    println!("cargo:rerun-if-changed=sql");
}
