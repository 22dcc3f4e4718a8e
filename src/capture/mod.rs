//! Offline captures: pcap/pcapng reading, link layers, IP defragmentation, TCP reassembly,
//! MSNP stream detection, and synthetic capture writing. Decoding itself is the
//! protocol module's job; nothing here interprets MSNP beyond finding where streams start.

pub mod packet;
pub mod reasm;
pub mod writer;
