//! `sqlx::migrate!` embeds the migrations at compile time: rebuild when one is added or changed
//! (otherwise a binary built earlier refuses a database that a newer migration has touched).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
