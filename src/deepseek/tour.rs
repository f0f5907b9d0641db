//! Chapter 9's tour step: placeholder replaced below.
