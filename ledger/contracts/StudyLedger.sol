// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IStudyLedger} from "./IStudyLedger.sol";

/// @title StudyLedger
/// @notice On-chain audit trail of a federated medical study: registration,
///         per-hospital consent, one record per training round with
///         hospital-signed EIP-712 commitments, and released model hashes.
/// @dev Gas design (see docs/LEDGER.md):
///      - commitments are never stored; each is checked, folded into one
///        running hash (`commitmentsHash`) and emitted in one
///        `CommitmentRecorded` event with the hospital indexed;
///      - the per-hospital state (budget, last epsilon, last round, status,
///        registered sample cap) is one packed storage slot, written once per
///        participation; the `lastRound` field doubles as the
///        duplicate-in-round check, and the cap costs no extra SLOAD;
///      - a round is two hashes plus one packed slot.
///      Merkle mode (`recordRoundMerkle`, mode 2) records only the root of
///      the hospitals' signed commitments (leaves, proofs and signatures live
///      in the artifact store): cost per round is flat in the number of
///      hospitals, and signatures, consent and budgets are checked by the
///      auditor instead of on-chain.
///      Errors, events and the stored records are declared in IStudyLedger.
///      Signers are recovered on two paths: `recordRound`'s Yul hot path
///      (gas: it is paid per hospital per round, see docs/LEDGER.md), and
///      OpenZeppelin's ECDSA everywhere else (`_trySigner`,
///      `recoverCommitmentSigner`). Both refuse the same signatures: length
///      other than 65, high s, and any that `ecrecover` cannot recover.
contract StudyLedger is IStudyLedger, AccessControl, EIP712 {
    // ------------------------------------------------------------------ types

    bytes32 public constant STUDY_ADMIN_ROLE = keccak256("STUDY_ADMIN_ROLE");

    /// @notice EIP-712 type hash of a hospital's round commitment (version 2 of the type:
    ///         `startModelHash`, the hash of the plaintext model the hospital trained from, is
    ///         the seventh field; the type name carries the version, the domain is unchanged).
    bytes32 public constant ROUND_COMMITMENT_TYPEHASH = keccak256(
        "RoundCommitmentV2(bytes32 studyId,uint64 round,bytes32 prevGlobalHash,bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash)"
    );

    /// @notice EIP-712 type hash of a hospital's attestation of a released model:
    ///         the hash of the checkpoint it decrypted for a round.
    bytes32 public constant MODEL_RELEASE_TYPEHASH =
        keccak256("ModelRelease(bytes32 studyId,uint64 round,bytes32 modelHash)");

    /// @notice EIP-712 type hash of a hospital's signed epsilon charge for a statistics query
    ///         (docs/HASHES.md section 9): what it charged, and its composed total after it.
    bytes32 public constant QUERY_CHARGE_TYPEHASH =
        keccak256("QueryCharge(bytes32 studyId,bytes32 queryHash,uint64 epsilonMicro,uint64 totalEpsilonMicro)");

    /// @notice EIP-712 type hash of a requester's signed statistics query (who asks, what, and why).
    bytes32 public constant QUERY_REQUEST_TYPEHASH =
        keccak256("QueryRequest(bytes32 studyId,bytes32 queryHash,string purpose)");

    /// @notice Domain tag of a statistics query's hash: queryHash = sha256(tag || querySpec).
    bytes public constant QUERY_DOMAIN = "FEDLEDGER-STATSQUERY-v1";

    /// @notice Largest registrable cohort size: the cap is packed into the
    ///         hospital's word above its status byte (56 bits).
    uint64 public constant MAX_SAMPLE_CAP = 2 ** 56 - 1;

    /// @notice Mode of a recorded round: commitments checked on-chain.
    uint8 public constant MODE_SIGNED = 1;

    /// @notice Mode of a recorded round: only the Merkle root of the signed
    ///         commitments is on chain; the auditor checks every leaf.
    uint8 public constant MODE_MERKLE = 2;

    /// @notice EIP-712 struct `RoundCommitmentV2`, field for field. Declared
    ///         here with `HospitalStatus`, not in IStudyLedger: the ABI names
    ///         both as StudyLedger's (`internalType`).
    struct Commitment {
        bytes32 studyId;
        uint64 round;
        bytes32 prevGlobalHash;
        bytes32 updateHash;
        uint64 sampleCount;
        uint64 epsilonMicro;
        /// @dev Not checked on-chain: calldata for the auditor, who requires it equal across a
        ///      round's hospitals (docs/AUDIT.md, start_model). Bound by the signature.
        bytes32 startModelHash;
    }

    /// @notice EIP-712 struct `QueryCharge`, field for field.
    struct QueryCharge {
        bytes32 studyId;
        bytes32 queryHash;
        uint64 epsilonMicro;
        uint64 totalEpsilonMicro;
    }

    enum HospitalStatus {
        None,
        Registered,
        Consented,
        Withdrawn
    }

    /// @dev Stored as one packed word (see _packHospital): written once per participation.
    struct Hospital {
        uint64 budgetMicro;
        uint64 lastEpsilonMicro;
        uint64 lastRound;
        HospitalStatus status;
        uint64 maxSamples;
    }

    // ---------------------------------------------------------------- storage

    mapping(bytes32 studyId => Study) private _studies;
    mapping(bytes32 studyId => mapping(address hospital => uint256 packedHospital)) private _hospitals;
    mapping(bytes32 studyId => mapping(uint64 round => RoundRecord)) private _rounds;
    mapping(bytes32 studyId => mapping(uint64 round => bytes32)) private _releasedModels;

    // ----------------------------------------------------------- constructor

    constructor(address admin) EIP712("FedLedger", "1") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    modifier onlyStudyAdmin() {
        if (!hasRole(DEFAULT_ADMIN_ROLE, msg.sender) && !hasRole(STUDY_ADMIN_ROLE, msg.sender)) {
            revert NotStudyAdmin(msg.sender);
        }
        _;
    }

    // ---------------------------------------------------------------- studies

    function registerStudy(
        bytes32 studyId,
        bytes32 configHash,
        bytes32 initialModelHash,
        bytes32 contextHash,
        string calldata codeVersion,
        address aggregator,
        uint64 expiry,
        address[] calldata hospitals,
        uint64[] calldata epsilonBudgetsMicro,
        uint64 releaseQuorum
    ) external onlyStudyAdmin {
        Study storage s = _studies[studyId];
        if (s.aggregator != address(0)) revert StudyAlreadyExists(studyId);
        if (aggregator == address(0)) revert ZeroAggregator();
        if (releaseQuorum == 0) revert ZeroReleaseQuorum();
        if (expiry <= block.timestamp) revert ExpiryInPast(expiry, block.timestamp);
        _checkHospitalList(hospitals.length, epsilonBudgetsMicro.length);
        s.configHash = configHash;
        s.initialModelHash = initialModelHash;
        s.contextHash = contextHash;
        s.aggregator = aggregator;
        s.expiry = expiry;
        s.registeredAt = uint64(block.timestamp);
        s.releaseQuorum = releaseQuorum;
        s.codeVersion = codeVersion;
        emit StudyRegistered(
            studyId, configHash, initialModelHash, contextHash, codeVersion, aggregator, expiry, hospitals.length
        );
        _addHospitals(studyId, s, hospitals, epsilonBudgetsMicro);
    }

    /// @notice Register more hospitals for an existing study (large consortia register in batches:
    /// one transaction cannot hold a thousand registrations). Each still has to consent itself.
    function addHospitals(bytes32 studyId, address[] calldata hospitals, uint64[] calldata epsilonBudgetsMicro)
        external
        onlyStudyAdmin
    {
        Study storage s = _knownStudy(studyId);
        _checkHospitalList(hospitals.length, epsilonBudgetsMicro.length);
        _addHospitals(studyId, s, hospitals, epsilonBudgetsMicro);
    }

    function _checkHospitalList(uint256 hospitals, uint256 budgets) private pure {
        if (hospitals == 0) revert NoHospitals();
        if (hospitals != budgets) revert HospitalsBudgetsLengthMismatch(hospitals, budgets);
    }

    function _knownStudy(bytes32 studyId) private view returns (Study storage s) {
        s = _studies[studyId];
        if (s.aggregator == address(0)) revert UnknownStudy(studyId);
    }

    function _addHospitals(
        bytes32 studyId,
        Study storage s,
        address[] calldata hospitals,
        uint64[] calldata epsilonBudgetsMicro
    ) private {
        mapping(address => uint256) storage hs = _hospitals[studyId];
        for (uint256 i = 0; i < hospitals.length; ++i) {
            address h = hospitals[i];
            if (h == address(0)) revert ZeroHospitalAddress(i);
            if (hs[h] != 0) revert HospitalRegisteredTwice(h);
            hs[h] = _packHospital(epsilonBudgetsMicro[i], 0, 0, HospitalStatus.Registered, 0);
            s.hospitals.push(h);
            emit HospitalRegistered(studyId, h, epsilonBudgetsMicro[i]);
        }
    }

    /// @notice The hospital's consent, sent from its own key, with its registered cohort size:
    ///         an upper bound on the records it trains on. `recordRound` refuses any commitment
    ///         of this hospital whose sample count exceeds it, so its FedAvg weight is capped.
    function consent(bytes32 studyId, uint64 maxSamples) external {
        Hospital memory h = _registeredHospital(studyId, msg.sender);
        if (h.status == HospitalStatus.Withdrawn) revert HospitalHasWithdrawn(studyId, msg.sender);
        if (h.status == HospitalStatus.Consented) revert HospitalAlreadyConsented(studyId, msg.sender);
        if (maxSamples == 0 || maxSamples > MAX_SAMPLE_CAP) revert InvalidSampleCap(maxSamples);
        _hospitals[studyId][msg.sender] =
            _packHospital(h.budgetMicro, h.lastEpsilonMicro, h.lastRound, HospitalStatus.Consented, maxSamples);
        emit HospitalConsented(studyId, msg.sender, maxSamples);
    }

    /// @notice Withdrawal is final: later rounds cannot include this hospital.
    function withdraw(bytes32 studyId) external {
        Hospital memory h = _registeredHospital(studyId, msg.sender);
        if (h.status == HospitalStatus.Withdrawn) revert HospitalHasWithdrawn(studyId, msg.sender);
        _hospitals[studyId][msg.sender] =
            _packHospital(h.budgetMicro, h.lastEpsilonMicro, h.lastRound, HospitalStatus.Withdrawn, h.maxSamples);
        emit HospitalWithdrew(studyId, msg.sender);
    }

    function _registeredHospital(bytes32 studyId, address account) private view returns (Hospital memory h) {
        _knownStudy(studyId);
        h = _unpackHospital(_hospitals[studyId][account]);
        if (h.status == HospitalStatus.None) revert HospitalNotRegistered(studyId, account);
    }

    /// @dev Word layout: budget [0,64) | lastEpsilon [64,128) | lastRound [128,192) | status [192,200)
    ///      | maxSamples [200,256) (0 until the hospital consents).
    function _packHospital(uint64 budget, uint64 lastEps, uint64 lastRnd, HospitalStatus status, uint64 maxSamples)
        private
        pure
        returns (uint256)
    {
        return uint256(budget) | (uint256(lastEps) << 64) | (uint256(lastRnd) << 128) | (uint256(status) << 192)
            | (uint256(maxSamples) << 200);
    }

    function _unpackHospital(uint256 w) private pure returns (Hospital memory h) {
        h.budgetMicro = uint64(w);
        h.lastEpsilonMicro = uint64(w >> 64);
        h.lastRound = uint64(w >> 128);
        h.status = HospitalStatus(uint8(w >> 192));
        h.maxSamples = uint64(w >> 200);
    }

    // ----------------------------------------------------------------- rounds

    function recordRound(
        bytes32 studyId,
        uint64 round,
        bytes32 prevGlobalHash,
        bytes32 aggregateHash,
        uint64 totalSamples,
        Commitment[] calldata commitments,
        bytes[] calldata signatures
    ) external {
        mapping(uint64 => RoundRecord) storage rs = _checkRoundHeader(studyId, round, prevGlobalHash, aggregateHash);
        uint256 n = commitments.length;
        if (n == 0) revert NoCommitments();
        if (n != signatures.length) revert SignatureCountMismatch(n, signatures.length);

        (bytes32 acc, uint256 sum) = _checkCommitments(studyId, round, prevGlobalHash, commitments, signatures);
        if (sum != totalSamples) revert SampleCountMismatch(totalSamples, sum);
        _storeRound(rs, studyId, round, prevGlobalHash, aggregateHash, totalSamples, acc, uint32(n), MODE_SIGNED);
    }

    /// @notice Record a round by the Merkle root of its hospitals' signed
    ///         commitments (mode 2): gas is flat in the number of hospitals.
    /// @dev Same aggregator, expiry, ordering and previous-hash checks as
    ///      `recordRound`. Nothing per hospital is checked here (signatures,
    ///      registration, consent, epsilon budget and monotonicity, sample
    ///      sum): the leaves, proofs and signatures are published in the
    ///      round manifest of the artifact store and the auditor checks every
    ///      one against this root and the registered values. Per-hospital
    ///      state (`getHospital`) is not updated by a Merkle round.
    ///      Leaf (docs/HASHES.md section 6):
    ///        keccak256(bytes.concat(keccak256(abi.encode(hospital, eip712Digest))))
    ///      tree: leaves sorted ascending, sorted-pair keccak256 as
    ///      OpenZeppelin's MerkleProof, an odd node is promoted unchanged.
    ///      `maxEpsilonMicro` (the largest cumulative epsilon among the
    ///      leaves, an aggregator claim the auditor checks) is in the calldata.
    function recordRoundMerkle(
        bytes32 studyId,
        uint64 round,
        bytes32 prevGlobalHash,
        bytes32 aggregateHash,
        uint64 totalSamples,
        bytes32 commitmentsRoot,
        uint32 participants,
        uint64 maxEpsilonMicro
    ) external {
        maxEpsilonMicro; // calldata only: read by auditors and watchers from the transaction
        mapping(uint64 => RoundRecord) storage rs = _checkRoundHeader(studyId, round, prevGlobalHash, aggregateHash);
        if (participants == 0) revert NoParticipants();
        if (commitmentsRoot == bytes32(0)) revert ZeroCommitmentsRoot();
        _storeRound(
            rs, studyId, round, prevGlobalHash, aggregateHash, totalSamples, commitmentsRoot, participants, MODE_MERKLE
        );
    }

    function _storeRound(
        mapping(uint64 => RoundRecord) storage rs,
        bytes32 studyId,
        uint64 round,
        bytes32 prevGlobalHash,
        bytes32 aggregateHash,
        uint64 totalSamples,
        bytes32 commitmentsHash,
        uint32 participants,
        uint8 mode
    ) private {
        rs[round] = RoundRecord({
            aggregateHash: aggregateHash,
            commitmentsHash: commitmentsHash,
            totalSamples: totalSamples,
            timestamp: uint64(block.timestamp),
            blockNumber: uint64(block.number),
            participants: participants,
            mode: mode
        });
        emit RoundRecorded(studyId, round, prevGlobalHash, aggregateHash, totalSamples, commitmentsHash, participants);
    }

    /// @dev Checks shared by both round modes: the caller is the study's
    ///      aggregator, the study has not expired, the aggregate hash is not
    ///      zero, the round is the next one and `prevGlobalHash` is the
    ///      previous round's aggregate (round 1: the initial model hash).
    function _checkRoundHeader(bytes32 studyId, uint64 round, bytes32 prevGlobalHash, bytes32 aggregateHash)
        private
        view
        returns (mapping(uint64 => RoundRecord) storage rs)
    {
        Study storage s = _studies[studyId];
        address aggregator = s.aggregator;
        if (aggregator == address(0)) revert UnknownStudy(studyId);
        if (msg.sender != aggregator) revert NotAggregator(studyId, msg.sender);
        if (block.timestamp > s.expiry) revert StudyExpired(studyId, s.expiry, block.timestamp);
        if (aggregateHash == bytes32(0)) revert ZeroAggregateHash();
        rs = _rounds[studyId];
        // round == lastRound + 1, without a stored lastRound: this round is
        // empty and the previous one is recorded (or this is round 1).
        if (rs[round].aggregateHash != bytes32(0)) revert RoundAlreadyRecorded(studyId, round);
        bytes32 expectedPrev;
        if (round == 1) {
            expectedPrev = s.initialModelHash;
        } else {
            if (round == 0) revert RoundOutOfOrder(studyId, round);
            expectedPrev = rs[round - 1].aggregateHash;
            if (expectedPrev == bytes32(0)) revert RoundOutOfOrder(studyId, round);
        }
        if (prevGlobalHash != expectedPrev) revert PrevHashMismatch(studyId, expectedPrev, prevGlobalHash);
    }

    /// @dev Verify every commitment and its signature, update each signer's
    ///      packed state, emit one CommitmentRecorded per commitment. Returns
    ///      the running hash of the EIP-712 digests and the sum of samples.
    ///      The hot path is one Yul block per commitment, its own struct hash
    ///      and `ecrecover` included (gas: the one place a second recovery
    ///      path is kept; `_trySigner` is the other). On any failure it stops
    ///      and `_explainFailure` re-runs the same checks in plain Solidity to
    ///      revert with the specific custom error.
    function _checkCommitments(
        bytes32 studyId,
        uint64 round,
        bytes32 prevGlobalHash,
        Commitment[] calldata commitments,
        bytes[] calldata signatures
    ) private returns (bytes32 acc, uint256 sum) {
        uint256 n = commitments.length;
        uint256 hsSlot;
        {
            mapping(address => uint256) storage hs = _hospitals[studyId];
            assembly ("memory-safe") {
                hsSlot := hs.slot
            }
        }
        bytes32 domainSep = _domainSeparatorV4();
        bytes32 typehash = ROUND_COMMITMENT_TYPEHASH;
        bytes32 topic = CommitmentRecorded.selector;
        uint256 cBase;
        uint256 sBase;
        assembly ("memory-safe") {
            cBase := commitments.offset
            sBase := signatures.offset
        }
        uint256 i;
        for (; i < n; ) {
            uint256 failed;
            assembly ("memory-safe") {
                // returns 0 on success; any other value: explain in Solidity
                function one(c, p, sid, rnd, prev, th, ds, slotBase, tp, ptr) -> bad, samples, digest {
                    bad := 1
                    if iszero(eq(calldataload(c), sid)) { leave }
                    if iszero(eq(calldataload(add(c, 0x20)), rnd)) { leave }
                    if iszero(eq(calldataload(add(c, 0x40)), prev)) { leave }
                    samples := calldataload(add(c, 0x80))
                    let eps := calldataload(add(c, 0xa0))
                    if gt(or(samples, eps), 0xffffffffffffffff) { leave }
                    // hashStruct(RoundCommitmentV2), then the EIP-712 digest
                    mstore(ptr, th)
                    calldatacopy(add(ptr, 0x20), c, 0xe0)
                    let structHash := keccak256(ptr, 0x100)
                    mstore(ptr, shl(240, 0x1901))
                    mstore(add(ptr, 0x02), ds)
                    mstore(add(ptr, 0x22), structHash)
                    digest := keccak256(ptr, 0x42)
                    // signature: 65 bytes r || s || v, inside calldata, low s
                    if iszero(eq(calldataload(p), 65)) { leave }
                    if gt(add(p, 0x61), calldatasize()) { leave }
                    let sv := calldataload(add(p, 0x40))
                    if gt(sv, 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0) { leave }
                    mstore(ptr, digest)
                    mstore(add(ptr, 0x20), byte(0, calldataload(add(p, 0x60))))
                    mstore(add(ptr, 0x40), calldataload(add(p, 0x20)))
                    mstore(add(ptr, 0x60), sv)
                    mstore(0x00, 0)
                    pop(staticcall(gas(), 0x01, ptr, 0x80, 0x00, 0x20))
                    let signer := mload(0x00)
                    if iszero(signer) { leave }
                    // hospital word: budget | lastEps << 64 | lastRound << 128 | status << 192 | cap << 200
                    mstore(0x20, slotBase)
                    let slot := keccak256(0x00, 0x40)
                    let w := sload(slot)
                    if iszero(eq(and(shr(192, w), 0xff), 2)) { leave } // status Consented
                    if eq(and(shr(128, w), 0xffffffffffffffff), rnd) { leave } // twice in this round
                    if gt(eps, and(w, 0xffffffffffffffff)) { leave } // over budget
                    if lt(eps, and(shr(64, w), 0xffffffffffffffff)) { leave } // epsilon decreased
                    let cap := shr(200, w)
                    if gt(samples, cap) { leave } // above the registered cohort size
                    sstore(
                        slot,
                        or(or(and(w, 0xffffffffffffffff), shl(64, eps)), or(shl(128, rnd), or(shl(192, 2), shl(200, cap))))
                    )
                    // CommitmentRecorded(address indexed hospital, bytes32 updateHash, uint64 sampleCount, uint64 epsilonMicro)
                    mstore(ptr, calldataload(add(c, 0x60)))
                    mstore(add(ptr, 0x20), samples)
                    mstore(add(ptr, 0x40), eps)
                    log2(ptr, 0x60, tp, signer)
                    bad := 0
                }
                let c := add(cBase, mul(i, 0xe0))
                let p := add(sBase, calldataload(add(sBase, shl(5, i))))
                let bad, samples, digest := one(c, p, studyId, round, prevGlobalHash, typehash, domainSep, hsSlot, topic,
                    mload(0x40))
                failed := bad
                if iszero(bad) {
                    mstore(0x00, acc)
                    mstore(0x20, digest)
                    acc := keccak256(0x00, 0x40)
                    sum := add(sum, samples) // each < 2**64: no overflow
                }
            }
            if (failed != 0) break;
            unchecked {
                ++i;
            }
        }
        if (i < n) _explainFailure(studyId, round, prevGlobalHash, commitments, signatures, i);
    }

    /// @dev Slow path: the same checks as the Yul block, in Solidity, reverting
    ///      with the specific error (tests/test_contract*.py pin which). Never
    ///      returns.
    function _explainFailure(
        bytes32 studyId,
        uint64 round,
        bytes32 prevGlobalHash,
        Commitment[] calldata commitments,
        bytes[] calldata signatures,
        uint256 i
    ) private view {
        Commitment calldata c = commitments[i];
        if (c.studyId != studyId) revert CommitmentStudyMismatch(i, c.studyId);
        if (c.round != round) revert CommitmentRoundMismatch(i, c.round);
        if (c.prevGlobalHash != prevGlobalHash) revert CommitmentPrevHashMismatch(i, c.prevGlobalHash);
        address signer = _trySigner(c, signatures[i]);
        if (signer == address(0)) revert InvalidSignature(i);

        Hospital memory h = _unpackHospital(_hospitals[studyId][signer]);
        if (h.status != HospitalStatus.Consented) {
            if (h.status == HospitalStatus.None) revert HospitalNotRegistered(studyId, signer);
            if (h.status == HospitalStatus.Withdrawn) revert HospitalHasWithdrawn(studyId, signer);
            revert HospitalNotConsented(studyId, signer);
        }
        if (h.lastRound == round) revert DuplicateHospital(studyId, signer);
        uint64 eps = c.epsilonMicro;
        if (eps > h.budgetMicro) revert EpsilonOverBudget(signer, eps, h.budgetMicro);
        if (eps < h.lastEpsilonMicro) revert EpsilonDecreased(signer, eps, h.lastEpsilonMicro);
        uint256 samples; // read raw: a dirty word must still reach MalformedCommitment below
        assembly ("memory-safe") {
            samples := calldataload(add(c, 0x80))
        }
        if (samples <= type(uint64).max && samples > h.maxSamples) {
            revert SampleCountAboveCap(studyId, signer, uint64(samples), h.maxSamples);
        }
        // a uint64 field with dirty high bits (only reachable with a crafted signature)
        revert MalformedCommitment(i);
    }

    /// @dev The commitment's signer, or address(0) when the signature is
    ///      invalid (OpenZeppelin's ECDSA: length, high s, unrecoverable).
    function _trySigner(Commitment calldata c, bytes calldata signature) private view returns (address signer) {
        (signer,,) = ECDSA.tryRecoverCalldata(_digest(c), signature);
    }

    /// @dev The EIP-712 digest of a commitment under this contract's domain.
    function _digest(Commitment calldata c) private view returns (bytes32) {
        return _hashTypedDataV4(_structHash(c));
    }

    /// @dev hashStruct(RoundCommitmentV2): typehash followed by the seven static
    ///      fields, which sit contiguously in calldata (7 words).
    function _structHash(Commitment calldata c) private pure returns (bytes32 h) {
        bytes32 typehash = ROUND_COMMITMENT_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), c, 0xe0)
            h := keccak256(ptr, 0x100)
        }
    }

    /// @notice Record the hash of a released (decrypted, plaintext) global checkpoint. It counts
    ///         only with EIP-712 `ModelRelease` signatures over this hash from at least the study's
    ///         `releaseQuorum` distinct consented hospitals: each signs the hash of the model it
    ///         decrypted itself, so the admin cannot release a model no quorum obtained.
    function releaseModel(bytes32 studyId, uint64 round, bytes32 modelHash, bytes[] calldata signatures)
        external
        onlyStudyAdmin
    {
        Study storage s = _knownStudy(studyId);
        if (_rounds[studyId][round].aggregateHash == bytes32(0)) revert RoundNotRecorded(studyId, round);
        if (modelHash == bytes32(0)) revert ZeroModelHash();
        if (_releasedModels[studyId][round] != bytes32(0)) revert ModelAlreadyReleased(studyId, round);
        uint64 quorum = s.releaseQuorum;
        if (signatures.length < quorum) revert ReleaseQuorumNotMet(studyId, round, signatures.length, quorum);
        bytes32 digest = releaseDigest(studyId, round, modelHash);
        address[] memory signers = new address[](signatures.length);
        mapping(address => uint256) storage hs = _hospitals[studyId];
        for (uint256 i = 0; i < signatures.length; ++i) {
            (address signer,,) = ECDSA.tryRecoverCalldata(digest, signatures[i]);
            if (signer == address(0)) revert InvalidReleaseSignature(i);
            if (_unpackHospital(hs[signer]).status != HospitalStatus.Consented) {
                revert ReleaseSignerNotHospital(studyId, signer);
            }
            for (uint256 j = 0; j < i; ++j) {
                if (signers[j] == signer) revert DuplicateReleaseSigner(studyId, signer);
            }
            signers[i] = signer;
        }
        _releasedModels[studyId][round] = modelHash;
        emit ModelReleased(studyId, round, modelHash, signers);
    }

    /// @notice EIP-712 digest of `ModelRelease(studyId, round, modelHash)` under this contract's
    ///         domain: what each hospital signs for a release.
    function releaseDigest(bytes32 studyId, uint64 round, bytes32 modelHash) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(MODEL_RELEASE_TYPEHASH, studyId, round, modelHash)));
    }

    // ---------------------------------------------------------- statistics

    /// @notice Record a descriptive-statistics query: its hash (bound here to the canonical query
    ///         spec, docs/HASHES.md section 8), who asked and why, and each answering hospital's
    ///         EIP-712 `QueryCharge` signature over the epsilon it charged and its composed total
    ///         (training and queries), which must stay within its registered budget. The
    ///         requester is recovered from its EIP-712 `QueryRequest` signature over the query
    ///         and its purpose: the record names who asked, not whom the aggregator names.
    /// @dev The study's aggregator records, as it records rounds. Nothing is stored: the
    ///      `QueryRecorded` and `QueryCharged` logs are the record, the auditor reads them.
    function recordQuery(
        bytes32 studyId,
        bytes32 queryHash,
        string calldata purpose,
        string calldata querySpec,
        QueryCharge[] calldata charges,
        bytes[] calldata signatures,
        bytes calldata requesterSignature
    ) external {
        Study storage s = _studies[studyId];
        if (s.aggregator == address(0)) revert UnknownStudy(studyId);
        if (msg.sender != s.aggregator) revert NotAggregator(studyId, msg.sender);
        if (block.timestamp > s.expiry) revert StudyExpired(studyId, s.expiry, block.timestamp);
        address requester = requestSigner(studyId, queryHash, purpose, requesterSignature);
        if (requester == address(0)) revert InvalidRequesterSignature();
        if (sha256(bytes.concat(QUERY_DOMAIN, bytes(querySpec))) != queryHash) revert QueryHashMismatch(queryHash);
        uint256 n = charges.length;
        if (n == 0) revert NoQueryCharges();
        if (n != signatures.length) revert SignatureCountMismatch(n, signatures.length);
        emit QueryRecorded(studyId, queryHash, requester, purpose, querySpec, uint32(n));
        address[] memory seen = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            address hospital = _checkQueryCharge(studyId, queryHash, charges[i], signatures[i], i);
            for (uint256 j = 0; j < i; ++j) {
                if (seen[j] == hospital) revert DuplicateHospital(studyId, hospital);
            }
            seen[i] = hospital;
            emit QueryCharged(studyId, queryHash, hospital, charges[i].epsilonMicro, charges[i].totalEpsilonMicro);
        }
    }

    function _checkQueryCharge(
        bytes32 studyId,
        bytes32 queryHash,
        QueryCharge calldata c,
        bytes calldata signature,
        uint256 index
    ) private view returns (address signer) {
        if (c.studyId != studyId || c.queryHash != queryHash || c.epsilonMicro > c.totalEpsilonMicro) {
            revert MalformedQueryCharge(index);
        }
        (signer,,) = ECDSA.tryRecoverCalldata(queryChargeDigest(c), signature);
        if (signer == address(0)) revert InvalidSignature(index);
        Hospital memory h = _unpackHospital(_hospitals[studyId][signer]);
        if (h.status != HospitalStatus.Consented) revert HospitalNotConsented(studyId, signer);
        if (c.totalEpsilonMicro > h.budgetMicro) revert EpsilonOverBudget(signer, c.totalEpsilonMicro, h.budgetMicro);
    }

    /// @notice The requester of a query: the signer of its EIP-712 `QueryRequest` (zero when invalid).
    function requestSigner(bytes32 studyId, bytes32 queryHash, string calldata purpose, bytes calldata signature)
        public
        view
        returns (address signer)
    {
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(QUERY_REQUEST_TYPEHASH, studyId, queryHash, keccak256(bytes(purpose)))));
        (signer,,) = ECDSA.tryRecoverCalldata(digest, signature);
    }

    /// @notice EIP-712 digest of a `QueryCharge` under this contract's domain: what a hospital signs.
    function queryChargeDigest(QueryCharge calldata c) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(QUERY_CHARGE_TYPEHASH, c.studyId, c.queryHash, c.epsilonMicro, c.totalEpsilonMicro))
        );
    }

    // ------------------------------------------------------------------ views

    function getStudy(bytes32 studyId)
        external
        view
        returns (
            bytes32 configHash,
            bytes32 initialModelHash,
            bytes32 contextHash,
            string memory codeVersion,
            address aggregator,
            uint64 expiry,
            uint64 lastRound,
            uint64 registeredAt,
            address[] memory hospitals,
            uint64 releaseQuorum
        )
    {
        Study storage s = _knownStudy(studyId);
        return (
            s.configHash,
            s.initialModelHash,
            s.contextHash,
            s.codeVersion,
            s.aggregator,
            s.expiry,
            _lastRound(studyId),
            s.registeredAt,
            s.hospitals,
            s.releaseQuorum
        );
    }

    function getHospital(bytes32 studyId, address hospital)
        external
        view
        returns (
            uint64 budgetMicro,
            uint64 lastEpsilonMicro,
            uint64 lastRound,
            HospitalStatus status,
            uint64 maxSamples
        )
    {
        Hospital memory h = _unpackHospital(_hospitals[studyId][hospital]);
        return (h.budgetMicro, h.lastEpsilonMicro, h.lastRound, h.status, h.maxSamples);
    }

    function lastRound(bytes32 studyId) external view returns (uint64) {
        return _lastRound(studyId);
    }

    /// @dev Exponential then binary search over recorded rounds (views only).
    function _lastRound(bytes32 studyId) private view returns (uint64) {
        mapping(uint64 => RoundRecord) storage rs = _rounds[studyId];
        if (rs[1].aggregateHash == bytes32(0)) return 0;
        uint64 lo = 1; // recorded
        uint64 hi = 2; // maybe not
        while (rs[hi].aggregateHash != bytes32(0)) {
            lo = hi;
            hi *= 2;
        }
        while (hi - lo > 1) {
            uint64 mid = lo + (hi - lo) / 2;
            if (rs[mid].aggregateHash != bytes32(0)) lo = mid;
            else hi = mid;
        }
        return lo;
    }

    function getRound(bytes32 studyId, uint64 round)
        external
        view
        returns (
            bytes32 prevGlobalHash,
            bytes32 aggregateHash,
            uint64 totalSamples,
            bytes32 commitmentsHash,
            uint32 participants,
            uint64 timestamp,
            uint64 blockNumber,
            uint8 mode
        )
    {
        Study storage s = _studies[studyId];
        RoundRecord memory r = _rounds[studyId][round];
        if (r.aggregateHash == bytes32(0)) revert RoundNotRecorded(studyId, round);
        prevGlobalHash = round == 1 ? s.initialModelHash : _rounds[studyId][round - 1].aggregateHash;
        return (
            prevGlobalHash,
            r.aggregateHash,
            r.totalSamples,
            r.commitmentsHash,
            r.participants,
            r.timestamp,
            r.blockNumber,
            r.mode
        );
    }

    function releasedModel(bytes32 studyId, uint64 round) external view returns (bytes32) {
        return _releasedModels[studyId][round];
    }

    /// @notice EIP-712 digest of a commitment under this contract's domain.
    function commitmentDigest(Commitment calldata c) external view returns (bytes32) {
        return _digest(c);
    }

    /// @notice Signer recovered on-chain from a commitment and its signature.
    function recoverCommitmentSigner(Commitment calldata c, bytes calldata signature)
        external
        view
        returns (address)
    {
        return ECDSA.recoverCalldata(_digest(c), signature);
    }

    /// @notice Merkle leaf of a hospital's commitment (docs/HASHES.md section 6):
    ///         keccak256(bytes.concat(keccak256(abi.encode(hospital, eip712Digest)))).
    function commitmentLeaf(address hospital, Commitment calldata c) public view returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(hospital, _digest(c)))));
    }

    /// @notice For a Merkle-mode round: the hospital whose signed commitment
    ///         is a leaf under the round's root (recovered from `signature`),
    ///         or address(0) when the signature is invalid, the proof does not
    ///         verify or the round is not a Merkle round. Registration,
    ///         consent and budget are not checked here (the auditor does).
    function merkleMember(
        bytes32 studyId,
        uint64 round,
        Commitment calldata c,
        bytes calldata signature,
        bytes32[] calldata proof
    ) external view returns (address) {
        RoundRecord storage r = _rounds[studyId][round];
        if (r.mode != MODE_MERKLE || c.studyId != studyId || c.round != round) return address(0);
        address signer = _trySigner(c, signature);
        if (signer == address(0)) return address(0);
        return MerkleProof.verifyCalldata(proof, r.commitmentsHash, commitmentLeaf(signer, c)) ? signer : address(0);
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
