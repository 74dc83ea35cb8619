//! Metric handles per component name, resolved on the first event that
//! names it, then found by a read-locked scan of a short list.

use std::fmt;
use std::sync::{Arc, RwLock};

pub(crate) struct ByName<H> {
    entries: RwLock<Vec<(Box<str>, Arc<H>)>>,
}

impl<H> Default for ByName<H> {
    fn default() -> Self {
        Self {
            entries: RwLock::new(Vec::new()),
        }
    }
}

impl<H> fmt::Debug for ByName<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .entries
            .read()
            .map(|e| e.iter().map(|(n, _)| n.to_string()).collect())
            .unwrap_or_default();
        f.debug_struct("ByName").field("names", &names).finish()
    }
}

impl<H> ByName<H> {
    pub(crate) fn get(&self, name: &str, resolve: impl FnOnce(&str) -> H) -> Arc<H> {
        let read = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, handles)) = read.iter().find(|(n, _)| &**n == name) {
            return Arc::clone(handles);
        }
        drop(read);
        let mut write = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, handles)) = write.iter().find(|(n, _)| &**n == name) {
            return Arc::clone(handles);
        }
        let handles = Arc::new(resolve(name));
        write.push((name.into(), Arc::clone(&handles)));
        handles
    }
}
