//! The deployer against the AWS stand-ins, one test binary (the SDKs linked once): every
//! command against moto server, and end to end on ministack, which really runs functions.

mod ministack;
mod moto;
