//! Structs read from JSON objects only. serde's derived structs also take an array, field by
//! field in declaration order, so `["text", null]` would pass for `{"text": "text"}` and
//! `{"chunking": [256, 32, 32]}` for `{"chunking": {"max_tokens": 256, ...}}`: input meant for
//! one shape silently read as another.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// A `T` read from a JSON object only.
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }

        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// For `#[serde(deserialize_with = "object")]` on a field whose type is a struct.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Object::deserialize(d).map(|Object(t)| t)
}

/// For `#[serde(deserialize_with = "optional_object")]` on an `Option` of a struct: `null` or
/// absent (with `default`) is `None`.
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|Object(t)| t))
}

/// For `#[serde(deserialize_with = "objects")]` on a `Vec` of structs: each item an object.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Object<T>>::deserialize(d).map(|v| v.into_iter().map(|Object(t)| t).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Pair {
        a: u32,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn objects_pass_and_arrays_do_not() {
        let Object(p) = serde_json::from_str::<Object<Pair>>(r#"{"a": 1, "b": "x"}"#).unwrap();
        assert_eq!(
            p,
            Pair {
                a: 1,
                b: Some("x".into())
            }
        );
        // serde alone takes the array, field by field.
        assert!(serde_json::from_str::<Pair>("[1, \"x\"]").is_ok());
        let e = serde_json::from_str::<Object<Pair>>("[1, \"x\"]")
            .err()
            .unwrap();
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
        assert!(serde_json::from_str::<Object<Pair>>("5").is_err());
    }
}
