//! The rules for a user's fields, one place for the REST handlers and the
//! gRPC service, so both refuse the same input with the same words.

/// The longest name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// The longest email, in bytes (the limit of a path in SMTP).
const MAX_EMAIL_BYTES: usize = 254;

/// `name` trimmed, if it has 1 to 200 characters.
pub(super) fn name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err("name must have 1 to 200 characters");
    }
    Ok(name)
}

/// `email` trimmed, if it looks like `local@domain` and fits.
pub(super) fn email(email: &str) -> Result<&str, &'static str> {
    let email = email.trim();
    let valid = email.len() <= MAX_EMAIL_BYTES
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if !valid {
        return Err("email must look like name@domain (at most 254 characters)");
    }
    Ok(email)
}
