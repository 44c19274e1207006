"""kinformer.testing.strategies: every generated value is what it claims to be.

Selectors are cross-checked three ways: what the strategies generate, what kinformer's parser
accepts, and a brute-force reference written from the grammar (apimachinery's
`labels.Parse` / `fields.ParseSelector`) with no code shared with either.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from kinformer import FieldSelector, LabelSelector, SelectorError
from kinformer.objects import field_value
from kinformer.testing import FakeApiServer, steps
from kinformer.testing import strategies as ks

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Drawing whole write sequences and objects costs more than checking them: fewer examples.
SLOW = settings(FAST, max_examples=30)

# -- a brute-force reference for label selectors ---------------------------------------------

_WS = " \t\r\n"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"


def _valid_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not (0 < len(prefix) <= 253 and re.fullmatch(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*", prefix)):
        return False
    return len(name) <= 63 and re.fullmatch(_NAME, name) is not None


def _valid_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and re.fullmatch(_NAME, value) is not None)


def _terms(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    out, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += c == "("
        depth -= c == ")"
        if c == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    return [*out, text[start:]]


_TOKEN = r"[^\s!=<>(),]+"


def reference_label_selector(text: str) -> list[tuple[str, str, set[str]]] | None:
    """(key, op, values) per requirement, or None when the text is not a valid selector."""
    if text.strip(_WS) == "":
        return []
    reqs = []
    for raw in _terms(text):
        term = raw.strip(_WS)
        if m := re.fullmatch(rf"!\s*({_TOKEN})", term):
            req = (m[1], "!", set[str]())
        elif m := re.fullmatch(rf"({_TOKEN})\s*(==|!=|=)\s*({_TOKEN})?", term):
            req = (m[1], "!=" if m[2] == "!=" else "=", {m[3] or ""})
        elif m := re.fullmatch(rf"({_TOKEN})\s*([<>])\s*({_TOKEN})", term):
            if not re.fullmatch(r"[0-9]+", m[3]) or int(m[3]) >= 2**63:
                return None
            req = (m[1], m[2], {m[3]})
        elif m := re.fullmatch(rf"({_TOKEN})\s+(in|notin)\s*\(([^()]*)\)", term):
            values = {v.strip(_WS) for v in m[3].split(",")}
            if any(re.search(r"\s", v) for v in values):
                return None
            req = (m[1], m[2], values)
        elif re.fullmatch(_TOKEN, term):
            req = (term, "exists", set())
        else:
            return None
        if not _valid_key(req[0]) or not all(_valid_value(v) for v in req[2]):
            return None
        reqs.append(req)
    return reqs


def reference_label_match(reqs: list[tuple[str, str, set[str]]], labels: dict[str, str]) -> bool:
    def one(key: str, op: str, values: set[str]) -> bool:
        present = key in labels
        if op == "exists":
            return present
        if op == "!":
            return not present
        if op in ("=", "in"):
            return present and labels[key] in values
        if op in ("!=", "notin"):
            return not present or labels[key] not in values
        if not present or not re.fullmatch(r"[+-]?[0-9]+", labels[key]) or not -2**63 <= int(labels[key]) < 2**63:
            return False
        bound = int(next(iter(values)))
        return int(labels[key]) > bound if op == ">" else int(labels[key]) < bound
    return all(one(*r) for r in reqs)


KEYS = st.sampled_from(["app", "tier", "example.com/team", "n"])
VALUES = st.sampled_from(["", "a", "b", "web", "5", "12", "007", "1_0", "x.y"])


@FAST
@given(ks.label_selectors())
def test_generated_label_selectors_parse_everywhere(text: str) -> None:
    parsed = LabelSelector.parse(text)
    assert reference_label_selector(text) is not None, text
    assert LabelSelector.parse(str(parsed)) == parsed


@FAST
@given(ks.label_selectors(KEYS, VALUES, max_size=4), ks.labels(KEYS, VALUES, max_size=4))
def test_label_matching_agrees_with_brute_force(text: str, labels: dict[str, str]) -> None:
    reference = reference_label_selector(text)
    assert reference is not None, text
    assert LabelSelector.parse(text).matches(labels) is reference_label_match(reference, labels), (text, labels)


@FAST
@given(ks.invalid_label_selectors())
def test_invalid_label_selectors_are_refused(text: str) -> None:
    assert reference_label_selector(text) is None, text
    with pytest.raises(SelectorError):
        LabelSelector.parse(text)


@pytest.mark.parametrize(("text", "why"), [
    ("k>-1", "a sign is not a valid label value"),
    ("k>1_0", "Go's ParseInt takes no underscores"),
    ("k>99999999999999999999", "beyond int64"),
    ("a\x0b", "vertical tab is not whitespace to the server"),
])
def test_selectors_the_server_refuses_and_python_would_take(text: str, why: str) -> None:
    with pytest.raises(SelectorError):
        LabelSelector.parse(text)


def test_label_compared_as_go_reads_integers() -> None:
    assert not LabelSelector.parse("k>5").matches({"k": "1_0"})
    assert LabelSelector.parse("k>5").matches({"k": "10"})
    assert LabelSelector.parse("k\r\n=\r\nv").matches({"k": "v"})


# -- field selectors ----------------------------------------------------------------------------

FIELDS = ("metadata.name", "metadata.namespace", "status.phase")
FIELD_VALUES = st.sampled_from(["", "a", "a,b", "x=y", "\\", "!", "Running"])


def reference_field_selector(text: str) -> list[tuple[str, str, str]]:
    terms, current, escaped = [], "", False
    for c in text:
        if escaped:
            current += "\\" + c
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(current)
            current = ""
        else:
            current += c
    terms.append(current)
    out = []
    for term in filter(None, terms):
        at = min(i for i in range(len(term)) if term.startswith(("!=", "=="), i) or term[i] == "=")
        op = "!=" if term.startswith("!=", at) else "==" if term.startswith("==", at) else "="
        raw = term[at + len(op):]
        out.append((term[:at], "!=" if op == "!=" else "=", re.sub(r"\\(.)", r"\1", raw)))
    return out


@FAST
@given(ks.field_selectors(FIELDS, FIELD_VALUES), ks.pods(name=st.sampled_from(["a", "b"]),
                                                         namespace=st.sampled_from(["a", "x"]),
                                                         phases=st.sampled_from(["Running", "a"])))
def test_field_selectors_parse_and_match_like_brute_force(text: str, pod: dict[str, Any]) -> None:
    parsed = FieldSelector.parse(text)
    assert FieldSelector.parse(str(parsed)) == parsed
    terms = reference_field_selector(text)
    expected = all((field_value(pod, path) == value) is (op == "=") for path, op, value in terms)
    assert parsed.matches(pod) is expected, (text, pod["metadata"], pod["status"])


@FAST
@given(ks.field_selectors())
def test_default_field_selectors_parse(text: str) -> None:
    assert {r.path for r in FieldSelector.parse(text).requirements} <= {"metadata.name", "metadata.namespace"}


# -- objects ------------------------------------------------------------------------------------

_DNS_1123 = re.compile(rf"{_DNS_LABEL}")


def _check_meta(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    assert _DNS_1123.fullmatch(meta["name"]) and len(meta["name"]) <= 63
    LabelSelector.from_dict({"matchLabels": meta.get("labels", {})})  # validates every key and value
    refs = meta.get("ownerReferences", [])
    assert sum(r["controller"] for r in refs) <= 1
    assert len({r["uid"] for r in refs}) == len(refs)


@SLOW
@given(st.one_of(ks.pods(owners=ks.owner_references()), ks.config_maps(), ks.deployments(),
                 ks.custom_objects("example.com", "v1", "Widget", namespace=None)))
def test_objects_are_valid_kubernetes_shapes(obj: dict[str, Any]) -> None:
    _check_meta(obj)
    if obj["kind"] == "Pod":
        assert obj["spec"]["containers"]
        assert obj["status"]["phase"] in ("Pending", "Running", "Succeeded", "Failed", "Unknown")
    if obj["kind"] == "Deployment":
        selector = LabelSelector.from_dict(obj["spec"]["selector"])
        assert not selector.empty()
        assert selector.matches(obj["spec"]["template"]["metadata"]["labels"])
    if obj["kind"] == "Widget":
        assert obj["apiVersion"] == "example.com/v1" and "namespace" not in obj["metadata"]


@SLOW
@given(ks.pods(server_fields=True))
def test_server_fields(pod: dict[str, Any]) -> None:
    meta = pod["metadata"]
    assert int(meta["resourceVersion"]) > 0 and meta["uid"] and meta["creationTimestamp"] and meta["generation"] >= 1


def test_objects_shrink_to_small_readable_ones() -> None:
    pod = find(ks.pods(), lambda p: True)
    assert pod == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "default"},
                   "spec": {"containers": [{"name": "a", "image": "registry.example/a:1"}]},
                   "status": {"phase": "Pending"}}
    labelled = find(ks.pods(), lambda p: len(p["metadata"].get("labels", {})) >= 2)
    labels = labelled["metadata"]["labels"]
    # Shrinking is best-effort about which second key it ends on ("b", "0", "a0a"...); what must
    # hold is that the example is small and readable: two short keys, empty values.
    assert len(labels) == 2 and "a" in labels and all(v == "" for v in labels.values())
    assert all(len(k) <= 4 for k in labels)


# -- writes, faults, streams ----------------------------------------------------------------------


@SLOW
@given(st.sampled_from(["configmaps", "pods", "deployments", "namespaces"]), st.data())
def test_write_sequences_are_valid_for_the_server(resource: str, data: st.DataObject) -> None:
    server = FakeApiServer()  # the Python write API works before start()
    writes = data.draw(ks.write_sequences(resource, max_size=25))
    live: set[str] = set()
    for write in writes:
        write.apply(server)  # raises the server's StatusError on an invalid write
        if isinstance(write, steps.Create):
            live.add(write.key)
        elif isinstance(write, steps.Delete):
            live.discard(write.key)
    assert set(server.objects(resource)) == live


@SLOW
@given(ks.write_sequences("configmaps", ["default/a"], existing=["default/a"], verbs=["delete"], min_size=3))
def test_write_sequences_start_from_existing(writes: list[steps.Write]) -> None:
    assert [type(w).__name__ for w in writes[:3]] == ["Delete", "Create", "Delete"]


@FAST
@given(ks.fault_schedules(max_size=10))
def test_fault_schedules_print_as_python_that_replays(schedule: list[steps.Fault]) -> None:
    namespace = {name: getattr(steps, name) for name in steps.__all__}
    assert eval(repr(schedule), namespace) == schedule
    server = FakeApiServer()
    steps.replay(server, schedule)


def test_fault_kinds_can_be_chosen() -> None:
    only = find(ks.fault_schedules([steps.FailNext], min_size=1, codes=[429], verbs=[("watch",)]),
                lambda s: any(f.retry_after for f in s))  # type: ignore[union-attr]
    assert only == [steps.FailNext(count=1, code=429, retry_after=1.0, verbs=("watch",))]


@FAST
@given(st.lists(st.integers(0, 9), max_size=5), st.lists(st.text(max_size=2), max_size=5), st.data())
def test_interleavings_keep_each_lists_order(ints: list[int], strs: list[str], data: st.DataObject) -> None:
    merged = data.draw(ks.interleavings(st.just(ints), st.just(strs)))
    assert [x for x in merged if isinstance(x, int)] == ints
    assert [x for x in merged if isinstance(x, str)] == strs


@SLOW
@given(ks.watch_event_streams())
def test_watch_event_streams_are_what_a_server_sends(events: list[dict[str, Any]]) -> None:
    live: dict[str, str] = {}
    last = 1
    for i, event in enumerate(events):
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            assert i == len(events) - 1 and obj["code"] == 410
            continue
        rv = int(obj["metadata"]["resourceVersion"])
        if kind == "BOOKMARK":
            assert rv == last
            continue
        assert rv > last
        last = rv
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        if kind == "ADDED":
            assert key not in live
            live[key] = obj["metadata"]["uid"]
        else:
            assert live.get(key) == obj["metadata"]["uid"]
            if kind == "DELETED":
                del live[key]


# -- packaging: hypothesis stays optional ----------------------------------------------------------

WITHOUT_HYPOTHESIS = textwrap.dedent("""
    import sys
    sys.modules["hypothesis"] = None  # as if not installed: importing it raises ImportError
    import kinformer.testing
    from kinformer.testing import FakeApiServer, replay, FailNext
    from kinformer.errors import MissingExtraError
    for name in ("strategies", "ConvergenceMachine", "check_converges"):
        try:
            if name == "strategies":
                import kinformer.testing.strategies
            else:
                getattr(kinformer.testing, name)
        except MissingExtraError as error:
            assert error.extra == "testing" and error.package == "hypothesis", error
            print(name, "->", error)
        else:
            raise SystemExit(f"{name} imported without hypothesis")
""")


def test_the_kit_names_the_testing_extra_when_hypothesis_is_missing() -> None:
    result = subprocess.run([sys.executable, "-c", WITHOUT_HYPOTHESIS], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("pip install 'kinformer[testing]'") == 3, result.stdout
