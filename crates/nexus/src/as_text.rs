//! Serde `with` helpers: ids, roles, invite codes and addresses travel as their text form
//! (`Display` out, `FromStr` in), the form people read and type, so the JSON of
//! [`crate::control`] and [`crate::views`] shows what `nexus` prints elsewhere.
//!
//! `#[serde(with = "as_text")]` for one value, `as_text::option` and `as_text::vec` for
//! an `Option` or a `Vec` of them.

use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value serialized as its `Display` text.
struct Shown<'a, T>(&'a T);

impl<T: Display> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

fn parse<T, E>(text: &str) -> Result<T, E>
where
    T: FromStr,
    T::Err: Display,
    E: serde::de::Error,
{
    text.parse()
        .map_err(|e| E::custom(format_args!("`{text}`: {e}")))
}

pub(crate) fn serialize<T: Display, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    Shown(value).serialize(serializer)
}

pub(crate) fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: FromStr,
    T::Err: Display,
    D: Deserializer<'de>,
{
    parse(&String::deserialize(deserializer)?)
}

/// `Option<T>`: `null` or the text (written only).
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<T: Display, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map(Shown).serialize(serializer)
    }
}

/// `Vec<T>`: a list of texts.
pub(crate) mod vec {
    use super::*;

    pub(crate) fn serialize<T: Display, S: Serializer>(
        values: &[T],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(Shown))
    }

    pub(crate) fn deserialize<'de, T, D>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| parse(text))
            .collect()
    }
}
