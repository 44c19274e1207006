import pytest

from kinformer import FieldSelector, LabelSelector, SelectorError

LABELS = {"app": "web", "tier": "frontend", "env": "prod", "replicas": "3", "example.com/team": "a"}

# (selector, matches LABELS)
VALID = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app in (web,db)", True),
    ("app in (db, cache)", False),
    ("app notin (db,cache)", True),
    ("app notin (web)", False),
    ("missing notin (x)", True),
    ("missing in (x)", False),
    ("app=web,tier=frontend", True),
    ("app=web,tier=backend", False),
    ("  app = web ,  env in ( prod , staging ) ", True),
    ("replicas>2", True),
    ("replicas<2", False),
    ("app>2", False),
    ("example.com/team=a", True),
    ("example.com/team", True),
    ("missing=", False),
    ("missing in ()", False),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_label_selector_matches(text: str, expected: bool) -> None:
    assert LabelSelector.parse(text).matches(LABELS) is expected


def test_empty_value_selects_empty_label() -> None:
    assert LabelSelector.parse("k=").matches({"k": ""})
    assert LabelSelector.parse("k in ()").matches({"k": ""})
    assert not LabelSelector.parse("k=").matches({"k": "x"})


INVALID = [
    ("app=web,", "end"),
    ("=web", "'='"),
    ("app in web", "'('"),
    ("app in (web", "')'"),
    ("app in (a b)", "','"),
    ("app web", "unknown operator"),
    ("app=-bad-", "-bad-"),
    ("-app=x", "-app"),
    ("a" * 64 + "=x", "63"),
    ("Bad_Prefix/app=x", "prefix"),
    ("replicas>x", "not an integer"),
    ("!app=x", "'='"),
    ("app,,tier", "','"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_label_selector_names_offending_part(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        LabelSelector.parse(text)
    assert fragment in str(info.value)


def test_label_selector_str_round_trips() -> None:
    for text, _ in VALID:
        parsed = LabelSelector.parse(text)
        assert LabelSelector.parse(str(parsed)) == parsed


def test_label_selector_from_dict() -> None:
    sel = LabelSelector.from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    })
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "legacy": "1"})
    assert sel == LabelSelector.parse("app=web,env in (dev,prod),!legacy")
    with pytest.raises(SelectorError, match="Bogus"):
        LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
    with pytest.raises(SelectorError, match="needs values"):
        LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": "In"}]})


POD = {"metadata": {"name": "p1", "namespace": "ns"}, "spec": {"nodeName": ""},
       "status": {"phase": "Running"}}


@pytest.mark.parametrize(("text", "expected"), [
    ("", True),
    ("metadata.name=p1", True),
    ("metadata.name==p1", True),
    ("metadata.name!=p1", False),
    ("metadata.name=p1,metadata.namespace=ns", True),
    ("metadata.name=p1,metadata.namespace=other", False),
    ("status.phase!=Failed", True),
    ("spec.nodeName=", True),
    ("spec.nodeName!=", False),
    ("metadata.name=a\\,b", False),
])
def test_field_selector_matches(text: str, expected: bool) -> None:
    assert FieldSelector.parse(text).matches(POD) is expected


def test_field_selector_escapes() -> None:
    odd = {"metadata": {"name": "a,b=c\\d"}}
    sel = FieldSelector.parse("metadata.name=a\\,b\\=c\\\\d")
    assert sel.matches(odd)
    assert FieldSelector.parse(str(sel)) == sel


@pytest.mark.parametrize(("text", "fragment"), [
    ("metadata.name", "can't understand"),
    ("=x", "bad field path"),
    ("metadata.name=a=b", "unescaped"),
    ("metadata.name=a\\x", "invalid escape"),
    ("status phase=x", "bad field path"),
])
def test_invalid_field_selector(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        FieldSelector.parse(text)
    assert fragment in str(info.value)
