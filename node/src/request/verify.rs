//! Answers that must hold up: spot checks of forwarded answers, and answers a client asks
//! holders to agree on.
//!
//! A receipt makes a forwarded answer attributable, not correct. Raw-ABI guests import
//! nothing, so their answer is a function of the blob and the input (fuel and memory caps are
//! the manifest's, the same everywhere): two honest holders give the same output, or fail the
//! same way ([`comparable_outcome`]). So:
//! - **Spot checks.** A share of the forwarded answers of raw-ABI modules ([`SPOT_CHECK_RATE`]
//!   by default in an open mesh, `spot_check_rate` in the config) is run again after the
//!   client has its answer, here or on another holder. If the outcomes differ, a third holder
//!   decides: a peer whose signed answer two others contradict is never routed to again, the
//!   contradiction is counted (`receipt_contradicted`) and logged with the receipts as
//!   evidence.
//! - **Agreement.** A client that sends [`AGREE_HEADER`]` = N` gets an answer only once `N`
//!   holders gave it (up to [`MAX_AGREE`]; one more holder is asked when they differ); the
//!   holders outvoted are treated as above.
//!
//! Clocks, randomness and NaN payloads can make other guests' answers differ honestly: WASI
//! guests are neither checked nor agreed on.

use std::sync::Arc;

use libp2p::PeerId;
use wasmesh_protocol::receipt::{SignedReceipt, comparable_outcome};
use wasmesh_protocol::wire::FailureKind;
use wasmesh_protocol::{Abi, ContentHash, ModuleRef, SignedManifest};

use super::Router;
use super::{Invocation, InvokeError, Purpose};
use crate::rejection::Rejection;

/// The share of forwarded answers of raw-ABI modules spot-checked in an open mesh, unless
/// configured.
pub(crate) const SPOT_CHECK_RATE: f64 = 0.05;
/// The request header with which a client asks for answers that agree (`2` or `3`).
pub(crate) const AGREE_HEADER: &str = "x-wasmesh-agree";
/// Most holders a client may ask to agree.
pub(crate) const MAX_AGREE: usize = 3;
/// Spot checks under way at once; a sample beyond them is skipped.
pub(crate) const MAX_SPOT_CHECKS: usize = 4;

/// One holder's answer to a request, as far as answers are compared.
#[derive(Debug, Clone)]
struct Opinion {
    by: PeerId,
    outcome: ContentHash,
    /// Its signed receipt, when another node answered.
    receipt: Option<SignedReceipt>,
}

impl Router {
    /// Samples a forwarded answer for a spot check (see the module docs): `peer` answered
    /// `outcome`, signing `receipt`.
    pub(super) fn spot_check_sampled(
        self: &Arc<Self>,
        signed: &SignedManifest,
        input: &[u8],
        peer: PeerId,
        receipt: SignedReceipt,
        outcome: Result<&[u8], FailureKind>,
    ) {
        let manifest = &signed.manifest;
        if manifest.abi != Abi::Raw || self.spot_check_rate <= 0.0 {
            return;
        }
        let Some(outcome) = comparable_outcome(outcome) else {
            return;
        };
        let draw = getrandom::u64().unwrap_or(u64::MAX) as f64 / u64::MAX as f64;
        if draw >= self.spot_check_rate {
            return;
        }
        let Ok(permit) = self.spot_checks.clone().try_acquire_owned() else {
            return;
        };
        let accused = Opinion {
            by: peer,
            outcome,
            receipt: Some(receipt),
        };
        let (node, module, input) = (self.clone(), ModuleRef::Hash(manifest.blob), input.to_vec());
        self.tasks.spawn(async move {
            let _permit = permit;
            node.spot_check(&module, input, accused).await;
        });
    }

    /// Runs the request again elsewhere and, if the answers differ, a third time; convicts
    /// whichever answer two others contradict.
    async fn spot_check(self: &Arc<Self>, module: &ModuleRef, input: Vec<u8>, accused: Opinion) {
        let Some(first) = self.opinion(module, &input, &[accused.by]).await else {
            self.metrics.count_rejection(Rejection::SpotCheckUnanswered);
            return;
        };
        if first.outcome == accused.outcome {
            self.metrics.spot_checks.inc();
            return;
        }
        let second = self.opinion(module, &input, &[accused.by, first.by]).await;
        match second {
            Some(second) if second.outcome == first.outcome => {
                self.convict(&accused, [&first, &second]);
            }
            Some(second) if second.outcome == accused.outcome => {
                self.convict(&first, [&accused, &second]);
            }
            _ => {
                self.metrics
                    .count_rejection(Rejection::SpotCheckInconclusive);
                tracing::warn!(module = %module, accused = %accused.by, other = %first.by, "a spot check found two different answers and no third to decide");
            }
        }
        self.metrics.spot_checks.inc();
    }

    /// A holder's answer to `input` other than those of `exclude`, if one answered with an
    /// outcome that can be compared.
    async fn opinion(
        self: &Arc<Self>,
        module: &ModuleRef,
        input: &[u8],
        exclude: &[PeerId],
    ) -> Option<Opinion> {
        let purpose = Purpose {
            exclude: exclude.to_vec(),
            checking: true,
        };
        let answered = self.invoke_with(module, input.to_vec(), &purpose).await;
        self.opinion_of(&answered)
    }

    /// What an answer says, as far as answers are compared.
    fn opinion_of(&self, answered: &Result<Invocation, InvokeError>) -> Option<Opinion> {
        match answered {
            Ok(invocation) => Some(Opinion {
                by: invocation.executed_by,
                outcome: comparable_outcome(Ok(&invocation.output.bytes))?,
                receipt: invocation.receipt,
            }),
            Err(InvokeError::RemoteGuest {
                kind,
                executed_by,
                receipt,
                ..
            }) => Some(Opinion {
                by: *executed_by,
                outcome: comparable_outcome(Err(*kind))?,
                receipt: Some(**receipt),
            }),
            Err(InvokeError::Guest(error)) => Some(Opinion {
                by: self.peer_id,
                outcome: comparable_outcome(Err(error.kind()))?,
                receipt: None,
            }),
            Err(_) => None,
        }
    }

    /// `liar`'s answer was contradicted by two others: it is never routed to again, counted,
    /// and the evidence logged.
    fn convict(&self, liar: &Opinion, witnesses: [&Opinion; 2]) {
        let evidence = |opinion: &Opinion| {
            opinion
                .receipt
                .map(|r| hex::encode(r.encode()))
                .unwrap_or_else(|| "(this node's own run)".into())
        };
        if liar.by == self.peer_id {
            tracing::warn!(witness_a = %witnesses[0].by, witness_b = %witnesses[1].by, "two holders contradict this node's own answer; is the module deterministic?");
            return;
        }
        if let Some(peer) = self.views.load().peers.get(&liar.by) {
            peer.feedback.ban();
        }
        self.metrics.count_rejection(Rejection::ReceiptContradicted);
        tracing::warn!(
            peer = %liar.by,
            receipt = %evidence(liar),
            witness_a = %witnesses[0].by,
            receipt_a = %evidence(witnesses[0]),
            witness_b = %witnesses[1].by,
            receipt_b = %evidence(witnesses[1]),
            "a peer's signed answer was contradicted by two others; it is not routed to again"
        );
    }

    /// Runs a request on holders until `wanted` of them gave the same answer (see the module
    /// docs); the answer, or why they did not agree.
    pub(crate) async fn invoke_agreed(
        self: &Arc<Self>,
        module_ref: &ModuleRef,
        input: Vec<u8>,
        wanted: usize,
    ) -> Result<Invocation, InvokeError> {
        let abi = self
            .views
            .load()
            .registry
            .resolve(module_ref)
            .map(|entry| entry.signed.manifest.abi)
            .ok_or_else(|| InvokeError::UnknownModule(module_ref.to_string()))?;
        if abi != Abi::Raw {
            return Err(InvokeError::NotDeterministic(module_ref.to_string()));
        }
        let wanted = wanted.clamp(1, MAX_AGREE);
        let mut answers: Vec<(Opinion, Result<Invocation, InvokeError>)> = Vec::new();
        while answers.len() <= wanted {
            let purpose = Purpose {
                exclude: answers.iter().map(|(o, _)| o.by).collect(),
                checking: true,
            };
            let answered = self.invoke_with(module_ref, input.clone(), &purpose).await;
            let Some(opinion) = self.opinion_of(&answered) else {
                // No other holder could answer (or only with a timeout): what was said stands.
                break;
            };
            answers.push((opinion, answered));
            if let Some(agreed) = agreed_on(&answers, wanted) {
                self.convict_outvoted(&answers, &agreed);
                let position = answers.iter().position(|(o, _)| o.outcome == agreed);
                if let Some(position) = position {
                    return answers.swap_remove(position).1;
                }
            }
        }
        Err(InvokeError::Disagreement {
            wanted,
            detail: answers
                .iter()
                .map(|(o, _)| format!("{} answered {}", o.by, o.outcome.short()))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    /// Every holder whose answer two or more others contradicted.
    fn convict_outvoted(
        &self,
        answers: &[(Opinion, Result<Invocation, InvokeError>)],
        agreed: &ContentHash,
    ) {
        let witnesses: Vec<&Opinion> = answers
            .iter()
            .map(|(o, _)| o)
            .filter(|o| o.outcome == *agreed)
            .collect();
        if let [a, b, ..] = witnesses[..] {
            for (opinion, _) in answers.iter().filter(|(o, _)| o.outcome != *agreed) {
                self.convict(opinion, [a, b]);
            }
        }
    }
}

/// The outcome `wanted` of `answers` share, if any.
fn agreed_on(
    answers: &[(Opinion, Result<Invocation, InvokeError>)],
    wanted: usize,
) -> Option<ContentHash> {
    answers.iter().map(|(o, _)| o.outcome).find(|outcome| {
        answers
            .iter()
            .filter(|(o, _)| o.outcome == *outcome)
            .count()
            >= wanted
    })
}
