//! `--json` output. JSON has no NaN or infinity, and serde_json writes
//! either as `null` without a word; a number that is not defined (an
//! accuracy over no samples, an AUC without both members and non-members)
//! is still written as `null`, so that every reader parses the output, but
//! it is named: in the output's `undefined` list (its JSON pointer and
//! value) and on stderr.
use serde::Serialize;
use serde::ser::{self, Impossible};

/// A JSON object of `key: value` fields, typed (unlike `serde_json::json!`,
/// whose values are already JSON, an undefined number among them already
/// `null`), so that [`undefined`] finds what it holds.
macro_rules! object {
    ($($key:ident: $value:expr),* $(,)?) => {{
        // One type parameter per field, named as the field (in a module,
        // so that the lint allowance covers the derived impl too).
        #[allow(non_camel_case_types)]
        mod object {
            #[derive(serde::Serialize)]
            pub struct Object<$($key),*> { $(pub $key: $key),* }
        }
        object::Object { $($key: $value),* }
    }};
}
pub(crate) use object;

/// A number the output writes as `null`: where (a JSON pointer) and what it
/// was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Undefined {
    pub at: String,
    pub value: String,
}

/// Every NaN or infinite number in `value`, in the order they are written.
pub fn undefined<T: Serialize + ?Sized>(value: &T) -> Vec<Undefined> {
    let mut f = Finder::default();
    // The finder itself never fails; a value's own Serialize may (then the
    // real serialisation reports it).
    let _ = value.serialize(&mut f);
    f.found
}

/// Walks a value as serde writes it, keeping the pointer of the current
/// position and noting each non-finite float.
#[derive(Default)]
struct Finder {
    path: Vec<String>,
    found: Vec<Undefined>,
}

impl Finder {
    fn float(&mut self, v: f64) {
        if !v.is_finite() {
            let at = self
                .path
                .iter()
                .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
                .collect();
            self.found.push(Undefined {
                at,
                value: v.to_string(),
            });
        }
    }

    /// Serialises `v` one level down, at `key`.
    fn at<T: Serialize + ?Sized>(&mut self, key: String, v: &T) -> Result<(), Never> {
        self.path.push(key);
        let r = v.serialize(&mut *self);
        self.path.pop();
        r
    }
}

#[derive(Debug)]
pub struct Never(String);

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Never(msg.to_string())
    }
}

/// A sequence, tuple or map being walked: the next index, and a map's
/// pending key.
pub struct Compound<'a> {
    f: &'a mut Finder,
    index: usize,
    key: String,
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        let key = self.index.to_string();
        self.index += 1;
        self.f.at(key, v)
    }
}

macro_rules! nothing {
    ($($name:ident: $t:ty),*) => {
        $(fn $name(self, _: $t) -> Result<(), Never> { Ok(()) })*
    };
}

impl<'a> ser::Serializer for &'a mut Finder {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    nothing!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8],
        serialize_unit_struct: &'static str);

    fn serialize_f32(self, v: f32) -> Result<(), Never> {
        self.float(v.into());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Never> {
        self.float(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Never> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Never> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Never> {
        self.at(variant.to_string(), v)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Never> {
        Ok(self.compound(None))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Never> {
        Ok(self.compound(None))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Never> {
        Ok(self.compound(None))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Never> {
        Ok(self.compound(Some(variant)))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Never> {
        Ok(self.compound(None))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Never> {
        Ok(self.compound(None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Never> {
        Ok(self.compound(Some(variant)))
    }
}

impl Finder {
    /// A compound value, inside `variant`'s key when it is an enum's (as
    /// serde_json writes externally tagged variants).
    fn compound(&mut self, variant: Option<&str>) -> Compound<'_> {
        if let Some(v) = variant {
            self.path.push(v.to_string());
        }
        Compound {
            f: self,
            index: 0,
            key: String::new(),
        }
    }
}

impl Compound<'_> {
    fn end(self, variant: bool) -> Result<(), Never> {
        if variant {
            self.f.path.pop();
        }
        Ok(())
    }
}

macro_rules! sequence {
    ($($tr:ident, $method:ident, $variant:expr);*) => {
        $(impl ser::$tr for Compound<'_> {
            type Ok = ();
            type Error = Never;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
                self.element(v)
            }
            fn end(self) -> Result<(), Never> {
                Compound::end(self, $variant)
            }
        })*
    };
}

sequence!(SerializeSeq, serialize_element, false;
    SerializeTuple, serialize_element, false;
    SerializeTupleStruct, serialize_field, false;
    SerializeTupleVariant, serialize_field, true);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Never> {
        self.key = k.serialize(KeyName).unwrap_or_default();
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        let key = std::mem::take(&mut self.key);
        self.f.at(key, v)
    }
    fn end(self) -> Result<(), Never> {
        Compound::end(self, false)
    }
}

macro_rules! fields {
    ($($tr:ident, $variant:expr);*) => {
        $(impl ser::$tr for Compound<'_> {
            type Ok = ();
            type Error = Never;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Never> {
                self.f.at(key.to_string(), v)
            }
            fn end(self) -> Result<(), Never> {
                Compound::end(self, $variant)
            }
        })*
    };
}

fields!(SerializeStruct, false; SerializeStructVariant, true);

/// A map key as JSON writes it (a string, or a number as text).
struct KeyName;

macro_rules! key_as_text {
    ($($name:ident: $t:ty),*) => {
        $(fn $name(self, v: $t) -> Result<String, Never> { Ok(v.to_string()) })*
    };
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = Never;
    type SerializeSeq = Impossible<String, Never>;
    type SerializeTuple = Impossible<String, Never>;
    type SerializeTupleStruct = Impossible<String, Never>;
    type SerializeTupleVariant = Impossible<String, Never>;
    type SerializeMap = Impossible<String, Never>;
    type SerializeStruct = Impossible<String, Never>;
    type SerializeStructVariant = Impossible<String, Never>;

    key_as_text!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16,
        serialize_i32: i32, serialize_i64: i64, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_f32: f32, serialize_f64: f64,
        serialize_char: char, serialize_str: &str);

    fn serialize_bytes(self, _: &[u8]) -> Result<String, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_none(self) -> Result<String, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<String, Never> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<String, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Never> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String, Never> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Never> {
        Err(ser::Error::custom("not a key"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Never> {
        Err(ser::Error::custom("not a key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: &'static str,
        accuracy: f64,
        per_class: Vec<f64>,
        gap: Option<f64>,
    }

    #[test]
    fn non_finite_numbers_are_found_with_their_pointer() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "a/b~c",
            Row {
                name: "x",
                accuracy: f64::NAN,
                per_class: vec![1.0, f64::INFINITY],
                gap: Some(f64::NAN),
            },
        );
        m.insert(
            "ok",
            Row {
                name: "y",
                accuracy: 50.0,
                per_class: vec![],
                gap: None,
            },
        );
        let at: Vec<String> = undefined(&m).into_iter().map(|u| u.at).collect();
        assert_eq!(
            at,
            ["/a~1b~0c/accuracy", "/a~1b~0c/per_class/1", "/a~1b~0c/gap"]
        );
        assert!(undefined(&serde_json::json!({"a": null, "b": [1.5]})).is_empty());
    }
}
