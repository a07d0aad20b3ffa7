"""Seed data: the situation a team's tests start from, committed as a YAML or JSON file.

Why a file and not a script: a test suite's starting state should be read at a glance and
reviewed like code, and it must never be a state the library itself would refuse. So a seed
file is only a list of requests to the library's own functions (``developers.create_developer``,
``agents.register``, ``policies.create``, authorize → approve → exchange, ``delegation.delegate``),
made in ONE write transaction: every check the library makes applies, and on any error (in the
file or refused by the library) nothing at all is written.

The format (YAML by ``.yaml``/``.yml``, JSON by ``.json``; every section is optional)::

    developers:
      - name: acme                  # "default" names the ledger's default (sandbox) developer
        sandbox: false              # optional, default false
    agents:
      - name: travel-booker
        developer: default          # optional, default "default"
        scopes: [flights:book, hotels:search, read]
        description: Books trips    # optional
        redirect_uris: []           # optional
    policies:
      - name: never delete mail
        effect: deny                # allow, deny, auto_approve, auto_deny
        scopes: [email:delete]      # optional: any scope when left out
        developer: default          # optional
        agent: travel-booker        # optional: an agent name
        principal: user_alice       # optional
        priority: 10                # optional
    grants:
      - name: alice-trip            # a label for references below (required, unique)
        agent: travel-booker
        principal: user_alice
        scopes: [flights:book]
        expires_in: 24h             # optional, the library's default otherwise
      - name: alice-flights
        parent: alice-trip          # delegation: the parent grant's label, above this one
        agent: flight-finder
        scopes: [flights:book]

Things refer to each other by name, never by id: a developer name (from this file, else a
developer of that name already in the ledger), an agent name (from this file, else the one
active agent of that name the developer already has), a grant label (from this file, above the
grant that names it). A root grant is made by the real consent flow as the agent's developer:
policies decide first (a deny policy refuses the grant, and so the file), a sandbox developer
approves at once, and otherwise the seed file approves in the person's stead (recorded as
decided by ``seed file`` through channel ``seed``). A delegated grant takes its principal from
its parent, so it may not name one.

Unknown keys, unknown references, bad scopes, malformed YAML/JSON: :class:`InvalidInput`
naming the place in the file, e.g. ``grants[1].parent: no grant named 'x' above this one``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import agents, authorization, delegation, developers, errors, policies, tokens
from .clock import parse_expires_in
from .founding import Ledger
from .models import CreatePolicyParams, ExchangeTokenResponse
from .scopes import normalize_scopes

DEFAULT_DEVELOPER = "default"
DECIDED_BY = "seed file"
CHANNEL = "seed"
MAX_FILE_BYTES = 16 * 1024 * 1024
"""A seed file is hand-written; anything larger is a mistake, not a fixture."""

_SECTIONS = ("developers", "agents", "policies", "grants")
_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # section: (required keys, optional keys)
    "developers": (frozenset({"name"}), frozenset({"sandbox"})),
    "agents": (frozenset({"name", "scopes"}), frozenset({"developer", "description", "redirect_uris"})),
    "policies": (frozenset({"name", "effect"}),
                 frozenset({"scopes", "developer", "agent", "principal", "priority"})),
    "grants": (frozenset({"name", "agent", "scopes"}), frozenset({"principal", "parent", "expires_in"})),
}

T = TypeVar("T")
Source = str | os.PathLike[str] | Mapping[str, Any]


@dataclass(frozen=True)
class SeedResult:
    """What a seed made, by the names the file gave: ids, and each grant's live token."""

    developers: dict[str, str] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)
    grants: dict[str, ExchangeTokenResponse] = field(default_factory=dict)

    def token(self, grant: str) -> str:
        """The grant token of the grant labelled ``grant`` (what a test hands its agent)."""
        return self.grants[grant].grant_token

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (camelCase like the rest); grant tokens included, refresh tokens not."""
        return {
            "developers": dict(self.developers), "agents": dict(self.agents),
            "policies": dict(self.policies),
            "grants": {name: {"grantId": g.grant_id, "tokenId": g.token_id, "grantToken": g.grant_token,
                              "expiresAt": g.expires_at, "scopes": list(g.scopes)}
                       for name, g in self.grants.items()},
        }


# ── reading the file ─────────────────────────────────────────────────────────


def load(source: Source) -> dict[str, Any]:
    """The seed document: a mapping as given, or a file parsed by its extension."""
    if isinstance(source, Mapping):
        return dict(source)
    if not isinstance(source, str | os.PathLike):
        raise errors.InvalidInput("a seed is a file path or a mapping")
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise errors.InvalidInput(f"{path}: a seed file ends in .yaml, .yml or .json")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise errors.InvalidInput(f"{path}: a seed file may be at most {MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise errors.InvalidInput(f"no seed file at {path}") from None
    except UnicodeDecodeError:
        raise errors.InvalidInput(f"{path}: a seed file must be UTF-8 text") from None
    except OSError as exc:
        raise errors.InvalidInput(f"{path}: cannot read it ({exc.strerror or exc})") from None
    document: object
    if suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.InvalidInput(
                f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    else:
        document = _load_yaml(path, text)
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise errors.InvalidInput(f"{path}: a seed file is a mapping of sections ({', '.join(_SECTIONS)})")
    return document


def _load_yaml(path: Path, text: str) -> object:
    import yaml  # only a YAML seed pays for it

    class UniqueKeyLoader(yaml.SafeLoader):
        """Safe YAML that refuses a key given twice (the plain loader keeps the last silently)."""

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise errors.InvalidInput(
                    f"{path}: key {key!r} is given twice (line {mark.line + 1})")
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise errors.InvalidInput(f"{path}: malformed YAML{where}: {problem}") from None


# ── validating the whole document before anything is written ─────────────────


@dataclass
class _Item:
    path: str
    values: dict[str, Any]


def _items(document: Mapping[str, Any]) -> dict[str, list[_Item]]:
    """Each section's entries, with their place in the file; shapes and key names checked."""
    unknown = [str(k) for k in document if k not in _SECTIONS]
    if unknown:
        raise errors.InvalidInput(
            f"{unknown[0]}: unknown section (known: {', '.join(_SECTIONS)})")
    out: dict[str, list[_Item]] = {}
    for section in _SECTIONS:
        entries = document.get(section)
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise errors.InvalidInput(f"{section}: must be a list")
        required, optional = _KEYS[section]
        names: set[str] = set()
        out[section] = []
        for index, entry in enumerate(entries):
            path = f"{section}[{index}]"
            if not isinstance(entry, dict):
                raise errors.InvalidInput(f"{path}: must be a mapping")
            for key in entry:
                if key not in required and key not in optional:
                    raise errors.InvalidInput(
                        f"{path}.{key}: unknown key (known: {', '.join(sorted(required | optional))})")
            for key in sorted(required):
                if entry.get(key) is None:
                    raise errors.InvalidInput(f"{path}.{key}: required")
            name = _text(entry["name"], f"{path}.name")
            if name in names:
                raise errors.InvalidInput(f"{path}.name: {name!r} is named twice in {section}")
            if section == "developers" and name == DEFAULT_DEVELOPER:
                raise errors.InvalidInput(
                    f"{path}.name: {DEFAULT_DEVELOPER!r} is the ledger's default developer already")
            names.add(name)
            out[section].append(_Item(path, entry))
    return out


def _text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidInput(f"{path}: must be a non-empty string")
    return value.strip()


def _scopes(value: object, path: str, *, allow_empty: bool = False) -> list[str]:
    return _at(path, lambda: normalize_scopes(value, allow_empty=allow_empty))


def _at(path: str, call: Callable[[], T]) -> T:
    """``call()``, with a library error re-raised naming the place in the file it came from."""
    try:
        return call()
    except errors.GrantexLocalError as exc:
        raise errors.InvalidInput(f"{path}: {exc.message}") from exc


@contextmanager
def _place(path: str) -> Iterator[None]:
    try:
        yield
    except errors.GrantexLocalError as exc:
        if exc.message.startswith(path):
            raise
        raise errors.InvalidInput(f"{path}: {exc.message}") from exc


class _Names:
    """Resolves the names a file uses: its own first, then what the ledger already holds."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.developers: dict[str, str] = {}
        self.agents: dict[str, tuple[str, str]] = {}  # name -> (agent id, developer id)

    def developer(self, name: object, path: str) -> str:
        name = _text(name, path)
        if name == DEFAULT_DEVELOPER:
            return developers.default_developer(self.ledger).id
        if name in self.developers:
            return self.developers[name]
        found = [d for d in developers.list_developers(self.ledger) if d.name == name]
        if len(found) != 1:
            raise errors.InvalidInput(
                f"{path}: no developer named {name!r}" if not found
                else f"{path}: {len(found)} developers in the ledger are named {name!r}")
        return found[0].id

    def agent(self, name: object, path: str) -> tuple[str, str]:
        name = _text(name, path)
        if name in self.agents:
            return self.agents[name]
        found = [a for a in agents.list_agents(self.ledger, None, status="active") if a.name == name]
        if len(found) != 1:
            raise errors.InvalidInput(
                f"{path}: no agent named {name!r}" if not found
                else f"{path}: {len(found)} active agents in the ledger are named {name!r}")
        return found[0].id, found[0].developer_id


def _check(ledger: Ledger, items: dict[str, list[_Item]]) -> None:
    """What can be checked without writing: types, scopes, expiries and references in the file."""
    file_developers = {str(i.values["name"]).strip() for i in items["developers"]}
    file_agents = {str(i.values["name"]).strip() for i in items["agents"]}
    names = _Names(ledger)
    for item in items["developers"]:
        sandbox = item.values.get("sandbox", False)
        if not isinstance(sandbox, bool):
            raise errors.InvalidInput(f"{item.path}.sandbox: must be true or false")
    for item in items["agents"]:
        _scopes(item.values["scopes"], f"{item.path}.scopes", allow_empty=True)
        developer = item.values.get("developer", DEFAULT_DEVELOPER)
        if _text(developer, f"{item.path}.developer") not in file_developers:
            names.developer(developer, f"{item.path}.developer")
        description = item.values.get("description", "")
        if not isinstance(description, str):
            raise errors.InvalidInput(f"{item.path}.description: must be a string")
    for item in items["policies"]:
        if item.values.get("scopes") is not None:
            _scopes(item.values["scopes"], f"{item.path}.scopes")
        developer = item.values.get("developer", DEFAULT_DEVELOPER)
        if _text(developer, f"{item.path}.developer") not in file_developers:
            names.developer(developer, f"{item.path}.developer")
        if item.values.get("agent") is not None and \
                _text(item.values["agent"], f"{item.path}.agent") not in file_agents:
            names.agent(item.values["agent"], f"{item.path}.agent")
        if item.values.get("principal") is not None:
            _text(item.values["principal"], f"{item.path}.principal")
    seen_grants: set[str] = set()
    for item in items["grants"]:
        values = item.values
        _scopes(values["scopes"], f"{item.path}.scopes")
        if _text(values["agent"], f"{item.path}.agent") not in file_agents:
            names.agent(values["agent"], f"{item.path}.agent")
        if values.get("expires_in") is not None:
            _at(f"{item.path}.expires_in",
                functools.partial(parse_expires_in, values["expires_in"], maximum=ledger.max_expires_in))
        parent = values.get("parent")
        if parent is not None:
            label = _text(parent, f"{item.path}.parent")
            if label not in seen_grants:
                raise errors.InvalidInput(f"{item.path}.parent: no grant named {label!r} above this one")
            if values.get("principal") is not None:
                raise errors.InvalidInput(
                    f"{item.path}.principal: a delegated grant takes its parent's principal; leave it out")
        elif values.get("principal") is None:
            raise errors.InvalidInput(f"{item.path}.principal: required (or a parent to delegate from)")
        else:
            _text(values["principal"], f"{item.path}.principal")
        seen_grants.add(str(values["name"]).strip())


# ── applying it ──────────────────────────────────────────────────────────────


def apply_seed(ledger: Ledger, source: Source) -> SeedResult:
    """Load ``source`` into ``ledger`` in one transaction; on any error nothing is written."""
    document = load(source)
    items = _items(document)
    _check(ledger, items)
    result = SeedResult()
    names = _Names(ledger)
    with ledger.write():
        for item in items["developers"]:
            name = str(item.values["name"]).strip()
            with _place(item.path):
                made = developers.create_developer(ledger, name,
                                                   sandbox=bool(item.values.get("sandbox", False)))
            names.developers[name] = result.developers[name] = made.id
        for item in items["agents"]:
            values = item.values
            name = str(values["name"]).strip()
            developer_id = names.developer(values.get("developer", DEFAULT_DEVELOPER),
                                           f"{item.path}.developer")
            with _place(item.path):
                agent = agents.register(ledger, developer_id, name=name, scopes=list(values["scopes"]),
                                        description=values.get("description", ""),
                                        redirect_uris=values.get("redirect_uris"))
            names.agents[name] = (agent.id, developer_id)
            result.agents[name] = agent.id
        for item in items["policies"]:
            values = item.values
            developer_id = names.developer(values.get("developer", DEFAULT_DEVELOPER),
                                           f"{item.path}.developer")
            agent_id = (names.agent(values["agent"], f"{item.path}.agent")[0]
                        if values.get("agent") is not None else None)
            params = CreatePolicyParams(
                name=str(values["name"]).strip(), effect=values["effect"],
                priority=values.get("priority", 0), agent_id=agent_id,
                principal_id=values.get("principal"), scopes=values.get("scopes"))
            with _place(item.path):
                policy = policies.create(ledger, developer_id, params)
            result.policies[params.name] = policy.id
        for item in items["grants"]:
            name = str(item.values["name"]).strip()
            with _place(item.path):
                result.grants[name] = _grant(ledger, names, result, item)
    return result


def _grant(ledger: Ledger, names: _Names, result: SeedResult, item: _Item) -> ExchangeTokenResponse:
    values = item.values
    agent_id, developer_id = names.agent(values["agent"], f"{item.path}.agent")
    scopes = list(values["scopes"])
    expires_in = values.get("expires_in")
    if values.get("parent") is not None:
        parent = result.grants[str(values["parent"]).strip()]
        return delegation.delegate(ledger, developer_id, parent_grant_token=parent.grant_token,
                                   sub_agent_id=agent_id, scopes=scopes, expires_in=expires_in)
    request = authorization.authorize(ledger, developer_id, agent_id=agent_id,
                                      principal_id=values["principal"], scopes=scopes,
                                      expires_in=expires_in)
    code = request.code
    if code is None:  # waiting for a person: the seed file decides in their stead
        code = authorization.approve(ledger, request.request_id, decided_by=DECIDED_BY,
                                     developer_id=developer_id, channel=CHANNEL).code
    if code is None:
        raise errors.InvalidState(f"authorization request {request.request_id} gave no code")
    return tokens.exchange(ledger, developer_id, code=code, agent_id=agent_id)
