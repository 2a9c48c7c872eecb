//! Avro binary datums (no container, no header), the payload format of the Pub/Sub
//! API: the writer sfsim encodes with, and a reader that decodes a datum straight into
//! an event type from the writer schema the server publishes (see [`RecordPlan`]). The
//! tests check both against a general Avro library.

/// A value that has an Avro type and binary encoding.
pub trait AvroField {
    /// The field's Avro type, as JSON.
    fn avro_type() -> serde_json::Value;
    /// Whether the type is a `["null", T]` union (which then defaults to null).
    const NULLABLE: bool = false;
    /// Appends the binary encoding.
    fn write(&self, out: &mut Vec<u8>);
    /// Whether the value is a null (left out when the record is shown as JSON).
    fn is_absent(&self) -> bool {
        false
    }
    /// Whether a value the writer wrote as `written` can be read into this type
    /// (Avro's schema resolution: the same type, or a promotion such as int to long).
    fn reads(written: Primitive) -> bool;
    /// The value from what was read (of a type [`Self::reads`] accepts, or null).
    fn from_datum(datum: Datum<'_>) -> Result<Self, ReadError>
    where
        Self: Sized;
}

/// Zig-zag variable-length encoding of `long` and `int`.
pub fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

impl AvroField for i64 {
    fn avro_type() -> serde_json::Value {
        "long".into()
    }
    fn write(&self, out: &mut Vec<u8>) {
        write_long(out, *self);
    }
    fn reads(written: Primitive) -> bool {
        matches!(written, Primitive::Int | Primitive::Long)
    }
    fn from_datum(datum: Datum<'_>) -> Result<Self, ReadError> {
        match datum {
            Datum::Long(n) => Ok(n),
            other => Err(other.mismatch("long")),
        }
    }
}

impl AvroField for i32 {
    fn avro_type() -> serde_json::Value {
        "int".into()
    }
    fn write(&self, out: &mut Vec<u8>) {
        write_long(out, i64::from(*self));
    }
    fn reads(written: Primitive) -> bool {
        written == Primitive::Int
    }
    fn from_datum(datum: Datum<'_>) -> Result<Self, ReadError> {
        match datum {
            Datum::Long(n) => i32::try_from(n).map_err(|_| ReadError::Invalid(format!("{n} is not an int"))),
            other => Err(other.mismatch("int")),
        }
    }
}

impl AvroField for f64 {
    fn avro_type() -> serde_json::Value {
        "double".into()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn reads(written: Primitive) -> bool {
        matches!(written, Primitive::Int | Primitive::Long | Primitive::Float | Primitive::Double)
    }
    fn from_datum(datum: Datum<'_>) -> Result<Self, ReadError> {
        match datum {
            Datum::Double(x) => Ok(x),
            Datum::Long(n) => Ok(n as f64),
            other => Err(other.mismatch("double")),
        }
    }
}

impl AvroField for bool {
    fn avro_type() -> serde_json::Value {
        "boolean".into()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn reads(written: Primitive) -> bool {
        written == Primitive::Boolean
    }
    fn from_datum(datum: Datum<'_>) -> Result<Self, ReadError> {
        match datum {
            Datum::Boolean(b) => Ok(b),
            other => Err(other.mismatch("boolean")),
        }
    }
}

impl AvroField for String {
    fn avro_type() -> serde_json::Value {
        "string".into()
    }
    fn write(&self, out: &mut Vec<u8>) {
        write_long(out, self.len() as i64);
        out.extend_from_slice(self.as_bytes());
    }
    fn reads(written: Primitive) -> bool {
        matches!(written, Primitive::String | Primitive::Bytes)
    }
    fn from_datum(datum: Datum<'_>) -> Result<Self, ReadError> {
        match datum {
            Datum::Text(text) => Ok(text.to_owned()),
            other => Err(other.mismatch("string")),
        }
    }
}

impl<T: AvroField> AvroField for Option<T> {
    fn avro_type() -> serde_json::Value {
        serde_json::json!(["null", T::avro_type()])
    }
    const NULLABLE: bool = true;
    fn is_absent(&self) -> bool {
        self.is_none()
    }
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(2); // union branch 1, zig-zag encoded
                value.write(out);
            }
        }
    }
    fn reads(written: Primitive) -> bool {
        written == Primitive::Null || T::reads(written)
    }
    fn from_datum(datum: Datum<'_>) -> Result<Self, ReadError> {
        match datum {
            Datum::Null => Ok(None),
            other => T::from_datum(other).map(Some),
        }
    }
}

/// The Avro primitive types (the only ones the event types' fields use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
}

impl Primitive {
    fn named(name: &str) -> Option<Primitive> {
        Some(match name {
            "null" => Primitive::Null,
            "boolean" => Primitive::Boolean,
            "int" => Primitive::Int,
            "long" => Primitive::Long,
            "float" => Primitive::Float,
            "double" => Primitive::Double,
            "bytes" => Primitive::Bytes,
            "string" => Primitive::String,
            _ => return None,
        })
    }
}

/// One value as read from a datum (ints and longs as `Long`, floats as `Double`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Datum<'a> {
    Null,
    Boolean(bool),
    Long(i64),
    Double(f64),
    Text(&'a str),
}

impl Datum<'_> {
    fn mismatch(self, wanted: &str) -> ReadError {
        ReadError::Invalid(format!("{self:?} where a {wanted} belongs"))
    }
}

/// Why a datum or a writer schema cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the payload ends inside field {0}")]
    Truncated(String),
    #[error("{0} bytes after the record")]
    Trailing(usize),
    #[error("field {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    /// The writer schema uses what this reader does not handle (nested records, arrays,
    /// maps, enums, fixed) or does not match the event type; read it another way.
    #[error("the writer schema cannot be read into {record}: {reason}")]
    Schema { record: &'static str, reason: String },
}

/// A record type: its name, its fields in schema order, and each field settable by
/// its position from what a reader read.
pub trait AvroRecord: Default {
    /// The record's name (in Avro, and the channel's name without `/event/`).
    const NAME: &'static str;
    /// Field names in schema order.
    const FIELDS: &'static [&'static str];
    /// Whether a field can be read from a value of `written` type.
    fn slot_reads(slot: usize, written: Primitive) -> bool;
    /// Whether a field may be absent from the writer's schema (it is nullable).
    fn slot_optional(slot: usize) -> bool;
    fn set_slot(&mut self, slot: usize, datum: Datum<'_>) -> Result<(), ReadError>;
}

/// How to read one writer field: its union branches (one when not a union), and
/// which of our fields it fills (none: skip it).
#[derive(Debug, Clone)]
struct Step {
    name: String,
    branches: Vec<Primitive>,
    slot: Option<usize>,
}

/// A writer schema resolved against an event type once (per schema id), so each datum
/// decodes straight into the type's fields: no generic values, no maps.
#[derive(Debug, Clone)]
pub struct RecordPlan<E> {
    steps: Vec<Step>,
    _type: std::marker::PhantomData<fn() -> E>,
}

impl<E: AvroRecord> RecordPlan<E> {
    /// Resolves `writer` (the schema's JSON): a record whose fields are primitives or
    /// unions of primitives, each field of ours it carries of a compatible type, and
    /// every field of ours it lacks nullable. Fields of the writer we do not know are
    /// read past.
    pub fn new(writer: &serde_json::Value) -> Result<RecordPlan<E>, ReadError> {
        let refuse = |reason: String| ReadError::Schema { record: E::NAME, reason };
        if writer.get("type").and_then(|t| t.as_str()) != Some("record") {
            return Err(refuse("not a record".into()));
        }
        let fields = writer.get("fields").and_then(|f| f.as_array()).ok_or_else(|| refuse("no fields".into()))?;
        let mut steps = Vec::with_capacity(fields.len());
        let mut filled = vec![false; E::FIELDS.len()];
        for field in fields {
            let name =
                field.get("name").and_then(|n| n.as_str()).ok_or_else(|| refuse("a field without a name".into()))?;
            let ty = field.get("type").ok_or_else(|| refuse(format!("{name} has no type")))?;
            let primitive = |t: &serde_json::Value| {
                let name = match t {
                    serde_json::Value::String(s) => Some(s.as_str()),
                    // {"type": "long", "logicalType": "timestamp-millis"} and the like
                    serde_json::Value::Object(o) => o.get("type").and_then(|t| t.as_str()),
                    _ => None,
                };
                name.and_then(Primitive::named)
            };
            let branches = match ty {
                serde_json::Value::Array(union) => union.iter().map(primitive).collect::<Option<Vec<_>>>(),
                single => primitive(single).map(|p| vec![p]),
            }
            .ok_or_else(|| refuse(format!("{name} is of a type this reader does not handle: {ty}")))?;
            let slot = E::FIELDS.iter().position(|f| *f == name);
            if let Some(slot) = slot {
                if let Some(bad) = branches.iter().find(|b| !E::slot_reads(slot, **b)) {
                    return Err(refuse(format!("{name} is written as {bad:?}, which it cannot be read from")));
                }
                filled[slot] = true;
            }
            steps.push(Step { name: name.to_owned(), branches, slot });
        }
        if let Some(missing) = (0..E::FIELDS.len()).find(|s| !filled[*s] && !E::slot_optional(*s)) {
            return Err(refuse(format!("{} is missing and has no default", E::FIELDS[missing])));
        }
        Ok(RecordPlan { steps, _type: std::marker::PhantomData })
    }

    /// Reads one datum: exactly one record, to the last byte.
    pub fn read(&self, payload: &[u8]) -> Result<E, ReadError> {
        let mut input = Input { bytes: payload, at: 0 };
        let mut event = E::default();
        for step in &self.steps {
            let located = |reason: String| ReadError::Field { field: step.name.clone(), reason };
            let branch = if step.branches.len() == 1 {
                step.branches[0]
            } else {
                let index = input.long().ok_or_else(|| ReadError::Truncated(step.name.clone()))?;
                *usize::try_from(index)
                    .ok()
                    .and_then(|i| step.branches.get(i))
                    .ok_or_else(|| located(format!("union branch {index} does not exist")))?
            };
            let datum = match branch {
                Primitive::Null => Some(Datum::Null),
                Primitive::Boolean => match input.take(1) {
                    Some([0]) => Some(Datum::Boolean(false)),
                    Some([1]) => Some(Datum::Boolean(true)),
                    Some(other) => return Err(located(format!("{} is not a boolean", other[0]))),
                    None => None,
                },
                Primitive::Int | Primitive::Long => input.long().map(Datum::Long),
                Primitive::Float => {
                    input.take(4).map(|b| Datum::Double(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))))
                }
                Primitive::Double => {
                    input.take(8).map(|b| Datum::Double(f64::from_le_bytes(b.try_into().unwrap_or_default())))
                }
                Primitive::Bytes | Primitive::String => {
                    let length = input.long().ok_or_else(|| ReadError::Truncated(step.name.clone()))?;
                    let length = usize::try_from(length).map_err(|_| located(format!("length {length}")))?;
                    match input.take(length) {
                        // A field we do not keep is read past, whatever its bytes.
                        Some(_) if step.slot.is_none() => Some(Datum::Null),
                        Some(bytes) => Some(Datum::Text(
                            std::str::from_utf8(bytes).map_err(|_| located("the text is not UTF-8".into()))?,
                        )),
                        None => None,
                    }
                }
            };
            let datum = datum.ok_or_else(|| ReadError::Truncated(step.name.clone()))?;
            if let Some(slot) = step.slot {
                event.set_slot(slot, datum).map_err(|e| located(e.to_string()))?;
            }
        }
        match payload.len() - input.at {
            0 => Ok(event),
            rest => Err(ReadError::Trailing(rest)),
        }
    }
}

/// A cursor over a datum's bytes; `None` when the input ends too soon.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len())?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Some(taken)
    }

    /// A zig-zag varint (`None` when the input ends inside it or it runs past ten
    /// bytes, which no long needs).
    fn long(&mut self) -> Option<i64> {
        let mut n: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some((n >> 1) as i64 ^ -((n & 1) as i64));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::{Schema, reader::datum::GenericDatumReader, types::Value};
    use proptest::prelude::*;

    use super::*;
    use crate::events::{EventRecord, ReportEventStream};

    fn plan() -> RecordPlan<ReportEventStream> {
        let schema = serde_json::from_str(&ReportEventStream::schema_json()).expect("schema");
        RecordPlan::new(&schema).expect("plan")
    }

    fn sample() -> ReportEventStream {
        ReportEventStream {
            CreatedDate: 1_764_000_000_123,
            CreatedById: "005000000000001AAA".into(),
            EventDate: Some(-5),
            Name: Some("Pipeline \u{e9}t\u{e9} 'Q3'".into()),
            Operation: Some("ReportExported".into()),
            RowsProcessed: Some(12_345.0),
            NumberOfColumns: Some(300),
            Sequence: Some(2),
            IsScheduled: Some(true),
            EvaluationTime: Some(0.5),
            ..Default::default()
        }
    }

    fn encoded(event: &ReportEventStream) -> Vec<u8> {
        let mut bytes = Vec::new();
        event.write_avro(&mut bytes);
        bytes
    }

    #[test]
    fn reads_back_what_was_written() {
        let event = sample();
        assert_eq!(plan().read(&encoded(&event)), Ok(event));
        assert_eq!(plan().read(&encoded(&ReportEventStream::default())), Ok(ReportEventStream::default()));
    }

    /// Every cut is refused, also between trailing nullable fields (a general reader
    /// takes a union cut off at the end for null), and so is a byte too many.
    #[test]
    fn refuses_every_truncation_and_trailing_bytes() {
        let bytes = encoded(&sample());
        for cut in 0..bytes.len() {
            assert!(matches!(plan().read(&bytes[..cut]), Err(ReadError::Truncated(_))), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(plan().read(&longer), Err(ReadError::Trailing(1)));
    }

    /// The writer's schema decides: its own field order, fields we do not know (read
    /// past), logical types, promotions (int to long, float to double), fields we have
    /// that it lacks (left empty).
    #[test]
    fn resolves_a_writer_schema_that_differs_from_ours() {
        let writer = serde_json::json!({
            "type": "record", "name": "ReportEventStream", "namespace": "com.sforce.eventbus",
            "fields": [
                {"name": "Name", "type": ["null", "string"], "default": null},
                {"name": "Unknown", "type": ["null", "double", "string"]},
                {"name": "Blob", "type": "bytes"},
                {"name": "CreatedById", "type": "string"},
                {"name": "CreatedDate", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "NumberOfColumns", "type": ["null", "int"]},
                {"name": "RowsProcessed", "type": ["null", "float"]},
            ]
        });
        let mut bytes = Vec::new();
        Some("Leads".to_owned()).write(&mut bytes);
        bytes.extend([4, 2, b'x']); // Unknown: branch 2, "x"
        bytes.extend([4, 0xff, 0xfe]); // Blob: two bytes that are not text
        "005x".to_owned().write(&mut bytes);
        write_long(&mut bytes, 1_700_000_000_000);
        Some(7_i32).write(&mut bytes);
        bytes.push(2);
        bytes.extend(2.5_f32.to_le_bytes());
        let plan = RecordPlan::<ReportEventStream>::new(&writer).expect("plan");
        let event = plan.read(&bytes).expect("reads");
        assert_eq!(event.Name.as_deref(), Some("Leads"));
        assert_eq!((event.CreatedById.as_str(), event.CreatedDate), ("005x", 1_700_000_000_000));
        assert_eq!((event.NumberOfColumns, event.RowsProcessed), (Some(7), Some(2.5)));
        assert_eq!(event.Operation, None);
    }

    #[test]
    fn refuses_schemas_it_cannot_read_into_the_type() {
        let with = |fields: serde_json::Value| {
            RecordPlan::<ReportEventStream>::new(&serde_json::json!({"type": "record", "name": "R", "fields": fields}))
        };
        let base = |extra: serde_json::Value| serde_json::json!([{"name": "CreatedDate", "type": "long"}, {"name": "CreatedById", "type": "string"}, extra]);
        assert!(with(base(serde_json::json!({"name": "Name", "type": ["null", "string"]}))).is_ok());
        for bad in [
            serde_json::json!({"name": "Nested", "type": {"type": "record", "name": "N", "fields": []}}),
            serde_json::json!({"name": "Name", "type": ["null", "long"]}),
            serde_json::json!({"name": "Tags", "type": {"type": "array", "items": "string"}}),
        ] {
            assert!(matches!(with(base(bad.clone())), Err(ReadError::Schema { .. })), "{bad}");
        }
        // A field of ours that cannot be null must be written.
        let without_created = serde_json::json!([{"name": "CreatedById", "type": "string"}]);
        assert!(matches!(with(without_created), Err(ReadError::Schema { .. })));
    }

    fn general(bytes: &[u8]) -> Option<Vec<(String, Value)>> {
        let schema = Schema::parse_str(&ReportEventStream::schema_json()).expect("schema");
        let reader = GenericDatumReader::builder(&schema).build().expect("reader");
        let mut rest = bytes;
        match reader.read_value(&mut rest) {
            Ok(Value::Record(fields)) if rest.is_empty() => Some(fields),
            _ => None,
        }
    }

    proptest! {
        /// Any damage: refused with a reason, or read exactly as a general Avro
        /// library reads it.
        #[test]
        fn agrees_with_a_general_reader_on_damaged_payloads(
            name in ".{0,12}",
            rows in any::<f64>(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut bytes = encoded(&ReportEventStream { Name: Some(name), RowsProcessed: Some(rows), ..sample() });
            for (at, byte) in damage {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if let Ok(event) = plan().read(&bytes) {
                let fields = general(&bytes).expect("a general reader reads it too");
                for (name, value) in fields {
                    let ours = event.field(&name).expect("a known field");
                    let theirs = match value {
                        Value::Union(_, inner) => *inner,
                        other => other,
                    };
                    let same = match (ours, theirs) {
                        (crate::events::FieldValue::Null, Value::Null) => true,
                        (crate::events::FieldValue::Bool(a), Value::Boolean(b)) => a == b,
                        (crate::events::FieldValue::Long(a), Value::Long(b)) => a == b,
                        (crate::events::FieldValue::Long(a), Value::Int(b)) => a == i64::from(b),
                        (crate::events::FieldValue::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
                        (crate::events::FieldValue::Text(a), Value::String(b)) => a == b,
                        _ => false,
                    };
                    prop_assert!(same, "{name} differs");
                }
            }
        }
    }
}
