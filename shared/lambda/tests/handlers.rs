//! The Lambda handlers driven on the embedded stack, in one test binary: one module per
//! concern, sharing `support`. (One binary links the SDK once; twenty did it twenty times.)

mod support;

mod alerts;
mod bad_input;
mod batch;
mod entities;
mod faults;
mod feedback;
mod flows;
mod reports;
mod streams;
