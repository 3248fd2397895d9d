//! Building blocks of every service's domain: state-machine refusals, and the one way
//! an enum is written as text (in a status column, an event payload).
//!
//! Nothing here knows GraphQL or SQL, except that [`text_enum!`] lets each enum it
//! declares be a text column and a JSON string directly (so no row or payload holds a
//! status as a `String`); a crate that declares one depends on `diesel` and `serde`.

use std::fmt;

use crate::error::ApiError;

/// A move the state machine forbids, in words for the caller: "a delivery that is
/// DELIVERED cannot be started".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    /// What moves: `rental`, `delivery`, `payment`.
    pub entity: &'static str,
    /// The state it is in, as text.
    pub from: &'static str,
    /// What was asked, as a past participle: `started`, `cancelled`.
    pub action: &'static str,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let article = if self.entity.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        write!(f, "{article} {} that is {} cannot be {}", self.entity, self.from, self.action)
    }
}

impl From<IllegalTransition> for ApiError {
    fn from(refused: IllegalTransition) -> Self {
        ApiError::conflict(refused.to_string())
    }
}

/// Text that names no value of an enum: stored data or a payload this version does not
/// understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    pub kind: &'static str,
    pub text: String,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.kind, self.text)
    }
}

impl std::error::Error for UnknownValue {}

impl From<UnknownValue> for ApiError {
    fn from(unknown: UnknownValue) -> Self {
        ApiError::internal(unknown)
    }
}

/// An enum with one fixed spelling per value, e.g. `DeliveryStatus::Shipping` ↔
/// `"SHIPPING"`. Declare one with [`text_enum!`].
pub trait TextEnum: Copy + Eq + 'static {
    /// What the values are called, for errors: `delivery status`.
    const KIND: &'static str;
    const ALL: &'static [Self];

    fn as_str(self) -> &'static str;

    fn parse(text: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.as_str() == text)
            .ok_or_else(|| UnknownValue { kind: Self::KIND, text: text.to_owned() })
    }
}

/// Declares an enum and its [`TextEnum`] spelling in one place. The enum is also a
/// PostgreSQL `text` column (diesel `AsExpression`, `ToSql`, `FromSql`: stored text it
/// does not know fails the read, never guessed) and a JSON string (serde):
///
/// ```
/// subgraph_kit::text_enum! {
///     /// Where a parcel is.
///     pub enum ParcelState: "parcel state" {
///         /// Still here.
///         Waiting = "WAITING",
///         Gone = "GONE",
///     }
/// }
/// use subgraph_kit::domain::TextEnum;
/// assert_eq!(ParcelState::parse("GONE"), Ok(ParcelState::Gone));
/// assert_eq!(ParcelState::Waiting.as_str(), "WAITING");
/// ```
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $kind:literal {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = diesel::sql_types::Text)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant ),+
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(
                    $crate::domain::TextEnum::as_str(*self),
                    out,
                )
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg>>::from_sql(
                    value,
                )?;
                Ok(<Self as $crate::domain::TextEnum>::parse(&text)?)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($crate::domain::TextEnum::as_str(*self))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                <Self as $crate::domain::TextEnum>::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl $crate::domain::TextEnum for $name {
            const KIND: &'static str = $kind;
            const ALL: &'static [Self] = &[$(Self::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::domain::TextEnum::as_str(*self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::text_enum! {
        enum Light: "light" {
            Red = "RED",
            Green = "GREEN",
        }
    }

    #[test]
    fn every_value_round_trips_and_unknown_text_is_named() {
        for light in Light::ALL {
            assert_eq!(Light::parse(light.as_str()), Ok(*light));
        }
        assert_eq!(Light::parse("BLUE").unwrap_err().to_string(), "unknown light \"BLUE\"");
    }

    #[test]
    fn a_refused_transition_reads_as_a_sentence_and_a_conflict() {
        let refused = IllegalTransition { entity: "delivery", from: "DELIVERED", action: "started" };
        assert_eq!(refused.to_string(), "a delivery that is DELIVERED cannot be started");
        assert_eq!(ApiError::from(refused).code, crate::ErrorCode::Conflict);
    }
}
