//! Writing Avro binary datums (no container, no header), the payload format of the
//! Pub/Sub API. Only the writer lives here; readers decode with a general Avro library
//! from the schema the server publishes, so the two are checked against each other.

/// A value that has an Avro type and binary encoding.
pub trait AvroField {
    /// The field's Avro type, as JSON.
    fn avro_type() -> serde_json::Value;
    /// Whether the type is a `["null", T]` union (which then defaults to null).
    const NULLABLE: bool = false;
    /// Appends the binary encoding.
    fn write(&self, out: &mut Vec<u8>);
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
}

impl AvroField for i32 {
    fn avro_type() -> serde_json::Value {
        "int".into()
    }
    fn write(&self, out: &mut Vec<u8>) {
        write_long(out, i64::from(*self));
    }
}

impl AvroField for f64 {
    fn avro_type() -> serde_json::Value {
        "double".into()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl AvroField for bool {
    fn avro_type() -> serde_json::Value {
        "boolean".into()
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
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
}

impl<T: AvroField> AvroField for Option<T> {
    fn avro_type() -> serde_json::Value {
        serde_json::json!(["null", T::avro_type()])
    }
    const NULLABLE: bool = true;
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(2); // union branch 1, zig-zag encoded
                value.write(out);
            }
        }
    }
}
