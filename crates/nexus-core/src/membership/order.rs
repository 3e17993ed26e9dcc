//! The canonical order of the entries in the causal past of some heads (parents first,
//! then the smallest `(timestamp, hash)`), and which entries are ancestors of which.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::SignedEntry;
use crate::hash::Hash;

/// The canonical order of the entries in the causal past of some heads, with their
/// ancestor sets, replayed until no new entry is void.
pub(super) struct Replay<'a> {
    pub(super) order: Vec<&'a SignedEntry>,
    /// Each entry's index in `order`, by hash.
    pub(super) position: HashMap<Hash, usize>,
    /// `ancestors[i]` has bit `j` set when entry `j` is a strict ancestor of entry `i`.
    ancestors: Vec<Vec<u64>>,
}

impl<'a> Replay<'a> {
    pub(super) fn new(entries: &'a HashMap<Hash, SignedEntry>, heads: &[Hash]) -> Self {
        // Collect the causal past of the heads.
        let mut closure: HashMap<Hash, &'a SignedEntry> = HashMap::new();
        let mut stack: Vec<Hash> = heads.to_vec();
        while let Some(hash) = stack.pop() {
            if closure.contains_key(&hash) {
                continue;
            }
            if let Some(entry) = entries.get(&hash) {
                closure.insert(hash, entry);
                stack.extend(entry.entry.parents.iter().copied());
            }
        }
        // Kahn's algorithm with a min-heap on (timestamp, hash).
        let mut pending_parents: HashMap<Hash, usize> = HashMap::new();
        let mut children: HashMap<Hash, Vec<Hash>> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for (hash, entry) in &closure {
            let known: Vec<&Hash> = entry
                .entry
                .parents
                .iter()
                .filter(|p| closure.contains_key(p))
                .collect();
            for parent in &known {
                children.entry(**parent).or_default().push(*hash);
            }
            if known.is_empty() {
                ready.push(Reverse((entry.entry.timestamp_ms, *hash)));
            } else {
                pending_parents.insert(*hash, known.len());
            }
        }
        let mut order = Vec::with_capacity(closure.len());
        let mut position: HashMap<Hash, usize> = HashMap::new();
        let words = closure.len().div_ceil(64);
        let mut ancestors: Vec<Vec<u64>> = Vec::with_capacity(closure.len());
        while let Some(Reverse((_, hash))) = ready.pop() {
            let entry = closure[&hash];
            let mut set = vec![0u64; words];
            for parent in &entry.entry.parents {
                if let Some(&p) = position.get(parent) {
                    for (word, parent_word) in set.iter_mut().zip(&ancestors[p]) {
                        *word |= parent_word;
                    }
                    set[p / 64] |= 1 << (p % 64);
                }
            }
            position.insert(hash, order.len());
            order.push(entry);
            ancestors.push(set);
            for child in children.get(&hash).into_iter().flatten() {
                if let Some(count) = pending_parents.get_mut(child) {
                    *count -= 1;
                    if *count == 0 {
                        ready.push(Reverse((closure[child].entry.timestamp_ms, *child)));
                    }
                }
            }
        }
        Self {
            order,
            position,
            ancestors,
        }
    }

    pub(super) fn is_ancestor(&self, ancestor: usize, of: usize) -> bool {
        self.ancestors[of][ancestor / 64] & (1 << (ancestor % 64)) != 0
    }

    pub(super) fn concurrent(&self, a: usize, b: usize) -> bool {
        a != b && !self.is_ancestor(a, b) && !self.is_ancestor(b, a)
    }
}
