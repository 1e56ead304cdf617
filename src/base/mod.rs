//! The vocabulary every other room uses: errors, cancellation, test
//! points, id maps, overlay options and strategies, durations. Imports
//! nothing from the other rooms.

pub mod cancel;
pub mod duration;
pub mod error;
pub mod idmap;
pub mod overlay;
// The test points are the tests' to name (their lists are what the tests
// iterate over); nothing else sees them.
#[cfg(feature = "testpoints")]
#[doc(hidden)]
pub mod testpoint;
#[cfg(not(feature = "testpoints"))]
pub(crate) mod testpoint;
