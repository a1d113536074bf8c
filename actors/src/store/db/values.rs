//! What crosses between the store's code and either database: parameters ([`Value`], bound
//! with [`params!`](crate::params)) and columns ([`Column`], read from a [`Row`]).

use std::error::Error as StdError;

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::error::StoreError;

/// A parameter of a statement.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// What can be bound as a [`Value`]; see [`params!`](crate::params).
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// The parameters of one statement, bound by reference as rusqlite's `params!` does:
/// `db.execute(sql, params![id.to_string(), now])`.
#[macro_export]
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$x)),*] as &[$crate::store::db::Value<'_>]
    };
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                _ => Err(format!("an integer given for a parameter of type {ty}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in to_sql, which knows the value as well as the type.
        true
    }

    to_sql_checked!();
}

/// A PostgreSQL integer of any width (`SELECT 1` is an `int4`, `COUNT(*)` an `int8`) or a
/// boolean (`EXISTS`), read as SQLite reads them: a 64-bit integer.
struct PgInt(i64);

impl<'a> FromSql<'a> for PgInt {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(PgInt(match *ty {
            Type::INT8 => i64::from_sql(ty, raw)?,
            Type::INT4 => i64::from(i32::from_sql(ty, raw)?),
            Type::INT2 => i64::from(i16::from_sql(ty, raw)?),
            _ => i64::from(bool::from_sql(ty, raw)?),
        }))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL)
    }
}

/// A column type the store reads.
pub trait Column: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self>;
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error>;
}

impl Column for i64 {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        row.try_get::<_, PgInt>(idx).map(|i| i.0)
    }
}

impl Column for Option<i64> {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        Ok(row.try_get::<_, Option<PgInt>>(idx)?.map(|i| i.0))
    }
}

impl Column for bool {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        row.try_get::<_, PgInt>(idx).map(|i| i.0 != 0)
    }
}

impl Column for String {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        row.try_get(idx)
    }
}

impl Column for Option<String> {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        row.try_get(idx)
    }
}

/// One row of an answer.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    pub fn get<T: Column>(&self, idx: usize) -> Result<T, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => T::from_sqlite(r, idx)?,
            Row::Postgres(r) => T::from_pg(r, idx)?,
        })
    }
}
