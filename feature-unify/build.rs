//! Empty: present so the `syn` build-dependency (a feature list only) is
//! resolved with the proc macros' build-time dependencies.

fn main() {}
