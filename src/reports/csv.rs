//! A report file: the records as CSV (header = the product's columns, as the records name
//! them), zipped, as Vonage delivers reports.

use super::records::{columns, fields, LegRow};
use super::Product;
use std::io::Write;

pub const CONTENT_TYPE: &str = "application/zip";

pub struct CsvReport {
    writer: csv::Writer<Vec<u8>>,
    product: Product,
    api_key: String,
    count: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl CsvReport {
    pub fn new(product: Product, api_key: &str) -> Result<CsvReport, FileError> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(columns(product))?;
        Ok(CsvReport { writer, product, api_key: api_key.to_string(), count: 0 })
    }

    pub fn push(&mut self, leg: &LegRow) -> Result<(), FileError> {
        let row = fields(self.product, &self.api_key, leg);
        self.writer.write_record(row.iter().map(|(_, v)| v.as_deref().unwrap_or("")))?;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> i64 {
        self.count
    }

    /// The CSV, alone in a zip archive under `csv_name`.
    pub fn into_zip(self, csv_name: &str) -> Result<Vec<u8>, FileError> {
        let csv = self.writer.into_inner().map_err(|e| FileError::Io(e.into_error()))?;
        zip_one(csv_name, &csv)
    }
}

/// A zip archive holding one deflated file.
pub fn zip_one(name: &str, content: &[u8]) -> Result<Vec<u8>, FileError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(name, options)?;
    zip.write_all(content)?;
    Ok(zip.finish()?.into_inner())
}
