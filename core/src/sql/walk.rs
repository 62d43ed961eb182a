//! A complete walk of a pg_query parse tree.
//!
//! pg_query's own `nodes()` stops at the node types it knows (it never
//! enters SQL/JSON nodes, for one), so a check built on it can be walked
//! around. Every protobuf type derives `serde::Serialize`, which visits every
//! field of every node by construction; this module is a `Serializer` that
//! writes nothing and records what it passes. It must never decide a class
//! itself: it only reports what is in the tree.

use serde::Serialize;
use serde::ser::{self, Impossible};

/// What one walk found.
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
    /// Walks `value` (a node, a statement, any part of a tree).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Scan {
        let mut scan = Scan::default();
        // The serializer itself never fails; an error could only come from a
        // type this walk does not expect, which then counts as nothing found
        // for that part — callers only use positive findings to raise.
        let _ = value.serialize(&mut scan);
        scan
    }
}

#[derive(Debug)]
pub(super) struct Never;

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

impl ser::Serializer for &mut Scan {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Impossible<(), Never>;
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
        if SIGNAL_FUNCTIONS.contains(&v) {
            self.signal_name = true;
        }
        if self.column_open.is_some()
            && let Some(last) = self.columns.last_mut()
        {
            last.push(v.to_string());
        }
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
            // Named by its op when its struct is walked.
            "JsonFuncExpr" => None,
            // Parts of the nodes above (formats, clauses, columns).
            v if v.starts_with("Json") => None,
            _ => None,
        };
        if let Some(s) = syntax {
            self.json.push(s);
        }
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Never> {
        Err(Never)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, Never> {
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
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }
}

impl ser::SerializeSeq for &mut Scan {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Scan {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Scan {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for &mut Scan {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Scan {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
        self.field = key;
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        self.stack.pop();
        if self.column_open.is_some_and(|d| self.stack.len() <= d) {
            self.column_open = None;
        }
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Scan {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> R {
        value.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}
