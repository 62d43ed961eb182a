//! The one complete walk of a pg_query parse tree, and the scan the
//! classifier makes with it.
//!
//! pg_query's own `nodes()` stops at the node types it knows (it never
//! enters SQL/JSON nodes, for one), so a check built on it can be walked
//! around. Every protobuf type derives `serde::Serialize`, which visits every
//! field of every node by construction: [`walk`] is a `Serializer` that
//! writes nothing and tells a [`Visit`] what it passes (structs and their
//! fields, lists, enum variants, strings, integers). The classifier's
//! [`Scan`] and the catalog's references (`catalog::refs`) are the two
//! visitors; neither builds an intermediate tree.
//!
//! The walk must never skip a part of the tree or decide anything itself:
//! it only reports what is there, and the visitors only use what they find
//! to raise a class or to look a name up.

use serde::Serialize;
use serde::ser;

/// What a visitor hears while [`walk`] passes through a tree, in tree order.
/// Every method defaults to ignoring the event.
pub(crate) trait Visit {
    /// A struct (a node, or a part of one) begins; `name` is its type.
    fn enter_struct(&mut self, _name: &'static str) {}
    /// The next value is the struct's field `key`.
    fn field(&mut self, _key: &'static str) {}
    /// The struct entered last ends.
    fn leave_struct(&mut self) {}
    /// A list begins (its elements follow).
    fn enter_seq(&mut self) {}
    /// The list entered last ends.
    fn leave_seq(&mut self) {}
    /// An enum variant holding a value begins: a `Node` of kind `variant`.
    fn enter_variant(&mut self, _variant: &'static str) {}
    /// The variant entered last ends.
    fn leave_variant(&mut self) {}
    /// A string value.
    fn str(&mut self, _v: &str) {}
    /// An `i32` value (protobuf enums are `i32`s).
    fn i32(&mut self, _v: i32) {}
}

/// Walks `value` (a parse result, a statement, a node, any part of a tree),
/// telling `visitor` everything it passes; gives the visitor back.
pub(crate) fn walk<T: Serialize + ?Sized, V: Visit>(value: &T, visitor: V) -> V {
    let mut walker = Walker(visitor);
    // The walk itself never fails (`Never` is only for serde's signature).
    let _ = value.serialize(&mut walker);
    walker.0
}

/// What one scan found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Node variants that are SQL/JSON syntax (or `merge_action()`), with
    /// the `op` of a `JsonFuncExpr` folded into the name, in tree order.
    pub json: Vec<&'static str>,
    /// A `SELECT ... INTO` somewhere (an `IntoClause` outside CREATE TABLE AS).
    pub into: bool,
    /// A locking clause (`FOR UPDATE`/`FOR SHARE`...) somewhere.
    pub locking: bool,
    /// Some node says `CASCADE` (`behavior = DROP_CASCADE`).
    pub cascade: bool,
    /// A string equal to a signal function's name somewhere.
    pub signal_name: bool,
    /// Every column reference, as its name parts (`*` left out).
    pub columns: Vec<Vec<String>>,
    field: &'static str,
    stack: Vec<&'static str>,
    column_open: Option<usize>,
}

/// The functions that signal other backends.
pub const SIGNAL_FUNCTIONS: [&str; 2] = ["pg_terminate_backend", "pg_cancel_backend"];

impl Scan {
    /// Scans `value` (a node, a statement, any part of a tree).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Scan {
        walk(value, Scan::default())
    }
}

impl Visit for Scan {
    fn enter_struct(&mut self, name: &'static str) {
        match name {
            "IntoClause" if !self.stack.contains(&"CreateTableAsStmt") => self.into = true,
            "LockingClause" => self.locking = true,
            "ColumnRef" => {
                self.columns.push(Vec::new());
                self.column_open = Some(self.stack.len());
            }
            _ => {}
        }
        self.stack.push(name);
    }

    fn field(&mut self, key: &'static str) {
        self.field = key;
    }

    fn leave_struct(&mut self) {
        self.stack.pop();
        if self.column_open.is_some_and(|d| self.stack.len() <= d) {
            self.column_open = None;
        }
    }

    fn enter_variant(&mut self, variant: &'static str) {
        let syntax = match variant {
            "JsonObjectConstructor" => Some("json_object"),
            "JsonArrayConstructor" | "JsonArrayQueryConstructor" => Some("json_array"),
            "JsonObjectAgg" => Some("json_objectagg"),
            "JsonArrayAgg" => Some("json_arrayagg"),
            "JsonIsPredicate" => Some("IS JSON"),
            "JsonParseExpr" => Some("json"),
            "JsonScalarExpr" => Some("json_scalar"),
            "JsonSerializeExpr" => Some("json_serialize"),
            "JsonTable" => Some("json_table"),
            "MergeSupportFunc" => Some("merge_action"),
            // Named by its op when its struct is walked; the other Json*
            // variants are parts of the nodes above (formats, clauses).
            _ => None,
        };
        if let Some(s) = syntax {
            self.json.push(s);
        }
    }

    fn str(&mut self, v: &str) {
        if SIGNAL_FUNCTIONS.contains(&v) {
            self.signal_name = true;
        }
        if self.column_open.is_some()
            && let Some(last) = self.columns.last_mut()
        {
            last.push(v.to_string());
        }
    }

    fn i32(&mut self, v: i32) {
        if self.field == "behavior" && v == pg_query::protobuf::DropBehavior::DropCascade as i32 {
            self.cascade = true;
        }
        if self.field == "op" && self.stack.last() == Some(&"JsonFuncExpr") {
            use pg_query::protobuf::JsonExprOp;
            let name = match JsonExprOp::try_from(v) {
                Ok(JsonExprOp::JsonExistsOp) => "json_exists",
                Ok(JsonExprOp::JsonQueryOp) => "json_query",
                Ok(JsonExprOp::JsonValueOp) => "json_value",
                Ok(JsonExprOp::JsonTableOp) => "json_table",
                _ => "json_value",
            };
            self.json.push(name);
        }
    }
}

/// serde's error type for a serializer that cannot fail.
#[derive(Debug)]
pub(crate) struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("walk error")
    }
}
impl std::error::Error for Never {}
impl ser::Error for Never {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Never
    }
}

type R = Result<(), Never>;

/// The serializer: passes every value on to the visitor (held by value, so
/// the hot path has one indirection, as a hand-written serializer would).
struct Walker<V>(V);

impl<V: Visit> ser::Serializer for &mut Walker<V> {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> R {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> R {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> R {
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> R {
        self.0.i32(v);
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> R {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> R {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> R {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> R {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> R {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> R {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> R {
        Ok(())
    }
    fn serialize_char(self, _: char) -> R {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> R {
        self.0.str(v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> R {
        Ok(())
    }
    fn serialize_none(self) -> R {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_unit(self) -> R {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> R {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> R {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> R {
        self.0.enter_variant(variant);
        let r = value.serialize(&mut *self);
        self.0.leave_variant();
        r
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Never> {
        self.0.enter_seq();
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Never> {
        self.0.enter_seq();
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        self.0.enter_seq();
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        self.0.enter_variant(variant);
        self.0.enter_seq();
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Never> {
        self.0.enter_seq();
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, Never> {
        self.0.enter_struct(name);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        self.0.enter_variant(variant);
        self.0.enter_struct(variant);
        Ok(self)
    }
}

impl<V: Visit> ser::SerializeSeq for &mut Walker<V> {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.0.leave_seq();
        Ok(())
    }
}

impl<V: Visit> ser::SerializeTuple for &mut Walker<V> {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.0.leave_seq();
        Ok(())
    }
}

impl<V: Visit> ser::SerializeTupleStruct for &mut Walker<V> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.0.leave_seq();
        Ok(())
    }
}

impl<V: Visit> ser::SerializeTupleVariant for &mut Walker<V> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.0.leave_seq();
        self.0.leave_variant();
        Ok(())
    }
}

/// A map (the protobuf tree has none) is walked as a list of its keys and
/// values, so nothing in one could be missed.
impl<V: Visit> ser::SerializeMap for &mut Walker<V> {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.0.leave_seq();
        Ok(())
    }
}

impl<V: Visit> ser::SerializeStruct for &mut Walker<V> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
        self.0.field(key);
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.0.leave_struct();
        Ok(())
    }
}

impl<V: Visit> ser::SerializeStructVariant for &mut Walker<V> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
        self.0.field(key);
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.0.leave_struct();
        self.0.leave_variant();
        Ok(())
    }
}
