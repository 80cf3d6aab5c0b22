//! Colour information carried by a photo, and its conversion to sRGB.
//!
//! Phones (Display P3) and cameras (Adobe RGB) tag their pixels with an ICC
//! profile or with CICP/nclx code points. The JPEG sxf writes is untagged sRGB, so
//! pixels in any other space must be converted, or the recipient sees the wrong
//! colours.

/// How a decoded photo says its pixels are to be read.
#[derive(Clone, PartialEq, Eq)]
#[allow(dead_code)] // read by the decoders as they are added
pub(crate) enum ColourInfo {
    /// Nothing said: the pixels are taken to be sRGB, as every viewer does.
    Unspecified,
    /// An embedded ICC profile (JPEG APP2, PNG iCCP, WebP ICCP, TIFF, HEIF `colr prof`).
    Icc(Vec<u8>),
    /// CICP code points (ITU-T H.273), as in a HEIF/AVIF `colr nclx` box or a PNG
    /// cICP chunk. The matrix coefficients are already applied by the decoder that
    /// produced RGB; primaries and transfer still describe the RGB values.
    Cicp {
        primaries: u8,
        transfer: u8,
        matrix: u8,
        full_range: bool,
    },
}

impl std::fmt::Debug for ColourInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColourInfo::Unspecified => f.write_str("Unspecified"),
            ColourInfo::Icc(bytes) => write!(f, "Icc({} bytes)", bytes.len()),
            ColourInfo::Cicp {
                primaries,
                transfer,
                matrix,
                full_range,
            } => write!(
                f,
                "Cicp({primaries}/{transfer}/{matrix}, full range {full_range})"
            ),
        }
    }
}
