//! Venafi's strong-password rule for key-carrying outputs.

use super::FormatError;

/// At least 12 characters and at least three of: lowercase, uppercase, digits, special characters.
pub fn check_strength(field: &str, pw: &str) -> Result<(), FormatError> {
    let classes = [
        pw.chars().any(|c| c.is_lowercase()),
        pw.chars().any(|c| c.is_uppercase()),
        pw.chars().any(|c| c.is_ascii_digit()),
        pw.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if pw.chars().count() < 12 || classes < 3 {
        return Err(FormatError::Invalid(format!(
            "{field} is not strong enough: use at least 12 characters with at least three of lowercase letters, uppercase letters, numbers and special characters."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_rule() {
        assert!(check_strength("Password", "Passw0rd!Passw0rd").is_ok());
        assert!(check_strength("Password", "abcdefgh1234").is_err());
        assert!(check_strength("Password", "abcDEF123456").is_ok());
        assert!(check_strength("Password", "Ab1!").is_err());
    }
}
