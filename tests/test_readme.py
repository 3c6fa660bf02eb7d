"""The README against the code it describes: the tables it prints (error codes, formats)
are the code's tables, its Layout names every module under app/ and its Configuration
table every setting, and every module, test file and setting it names exists. Each
test fails as soon as one side changes without the other."""

import ast
import re
from pathlib import Path

from pydantic import AliasChoices

from app.config import Settings
from app.domain.errors import Code
from app.domain.formats import FORMATS
from app.http.problems import STATUS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# `app/http/routes.py`, wherever it is written.
APP_PATH = re.compile(r"(?<![\w/.-])app/[\w/]+\.py\b")
# `app.http.lambda_handler.handler`, `app.http.app:create_app`, `python -m app.cli`; not a
# file name such as `app.py`.
DOTTED = re.compile(r"(?<![\w/.-])app(?:\.\w+)+(?::\w+)?")
TEST_FILE = re.compile(r"(?<![\w/.-])(?:tests/)?((?:test_\w+|conftest)\.py)\b")
VARIABLE = re.compile(r"\bIMAGES_[A-Z0-9_]*[A-Z0-9]\b")
CODE_SPAN = re.compile(r"`([^`]+)`")


def _section(title: str) -> str:
    """The text under `## title`, up to the next heading of that level."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert found is not None, f"README.md has no section {title!r}"
    return found.group(1)


def _table(section: str, first_header: str) -> list[list[str]]:
    """The body rows (cells stripped) of the table in `section` whose first header cell
    is `first_header`."""
    tables: list[list[list[str]]] = [[]]
    for line in section.splitlines():
        if line.startswith("|"):
            tables[-1].append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif tables[-1]:
            tables.append([])
    for table in tables:
        if table and table[0][0] == first_header:
            return table[2:]  # past the header and the |---| line
    raise AssertionError(f"no table headed {first_header!r} in the section")


def _code_spans(cell: str) -> list[str]:
    return CODE_SPAN.findall(cell)


def _module_file(parts: list[str]) -> Path | None:
    """The file of module `app.<parts>`, if there is one."""
    base = ROOT.joinpath("app", *parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_names(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _resolves(dotted: str) -> bool:
    """Whether `app.a.b[.name]` or `app.a.b:name` is a module, or a name defined at the
    top of one."""
    module_path, _, attribute = dotted.partition(":")
    parts = module_path.split(".")[1:]
    if attribute:
        module = _module_file(parts)
        return module is not None and attribute in _top_level_names(module)
    if _module_file(parts) is not None:
        return True
    module = _module_file(parts[:-1]) if len(parts) > 1 else None
    return module is not None and parts[-1] in _top_level_names(module)


def _layout_paths() -> list[str]:
    """The paths the Layout section's tree names: two spaces of indent per level, a
    directory ending in `/`, descriptions after the name (continuation lines skipped)."""
    block = re.search(r"^```\n(.*?)^```", _section("Layout"), re.M | re.S)
    assert block is not None, "the Layout section has no tree"
    paths: list[str] = []
    parents: list[str] = []
    for line in block.group(1).splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.endswith(("/", ".py")):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        path = "".join(parents[:depth]) + name
        paths.append(path)
        if name.endswith("/"):
            parents[depth:] = [name]
    return paths


def _app_modules() -> list[str]:
    """Every module and package under app/, as the Layout tree writes them: a package as
    its directory (`app/http/`), a module as its file (`app/http/routes.py`)."""
    modules: list[str] = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        relative = path.relative_to(ROOT)
        modules.append(f"{relative.parent}/" if path.name == "__init__.py" else str(relative))
    return modules


def _variables_of(name: str) -> list[str]:
    """The environment variables Settings reads field `name` from: its aliases when it
    has some (`aws_endpoint_url_s3` is read as `AWS_ENDPOINT_URL_S3`, `region` as
    `IMAGES_REGION`, `AWS_REGION` or `AWS_DEFAULT_REGION`), else the prefixed name."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{Settings.model_config.get('env_prefix', '')}{name}".upper()]


def _setting_variables() -> set[str]:
    """Every environment variable Settings reads."""
    return {variable for name in Settings.model_fields for variable in _variables_of(name)}


def _configuration_variables() -> set[str]:
    """The variables the Configuration table's rows name (its first column)."""
    rows = _table(_section("Configuration"), "Variable")
    return {span for row in rows for span in _code_spans(row[0])}


def test_error_code_table_lists_every_code_with_its_status() -> None:
    rows = _table(_section("Error codes"), "Code")

    listed = sorted((_code_spans(row[0])[0], int(row[1])) for row in rows)

    assert listed == sorted((code.value, STATUS[code]) for code in Code)


def test_formats_table_lists_every_format_with_its_extensions_and_label() -> None:
    rows = _table(_section("Formats"), "Content type")

    listed = [(_code_spans(row[0])[0], tuple(_code_spans(row[1])), row[2]) for row in rows]

    assert listed == [(f.content_type, f.extensions, f.label) for f in FORMATS]


def test_every_app_path_named_exists() -> None:
    named = set(APP_PATH.findall(README))

    missing = sorted(path for path in named if not (ROOT / path).is_file())

    assert len(named) > 10  # the pattern still finds what the README names
    assert missing == []


def test_every_dotted_module_named_exists() -> None:
    named = {name for name in DOTTED.findall(README) if not name.endswith(".py")}

    missing = sorted(name for name in named if not _resolves(name))

    assert {"app.http.lambda_handler.handler", "app.pipeline.lambda_handler.handler"} <= named
    assert missing == []


def test_layout_names_only_modules_and_packages_that_exist() -> None:
    paths = _layout_paths()

    missing = [path for path in paths if not (ROOT / path).exists()]

    assert "app/pipeline/worker.py" in paths  # the tree is still read as a tree
    assert missing == []


def test_layout_names_every_module_and_package_under_app() -> None:
    modules = _app_modules()
    listed = set(_layout_paths())

    missing = [module for module in modules if module not in listed]

    assert {"app/", "app/storage/", "app/storage/items.py"} <= set(modules)  # still found
    assert missing == []


def test_configuration_table_lists_every_setting_by_the_variables_it_is_read_from() -> None:
    listed = _configuration_variables()

    missing = sorted(
        f"{name} ({variable})"
        for name in Settings.model_fields
        for variable in _variables_of(name)
        if variable not in listed
    )
    unknown = sorted(listed - _setting_variables())

    assert {"IMAGES_JWT_SECRET", "AWS_ENDPOINT_URL_S3"} <= listed  # the table is still read
    assert missing == []
    assert unknown == []


def test_every_test_file_named_exists() -> None:
    named = set(TEST_FILE.findall(README))

    missing = sorted(name for name in named if not (ROOT / "tests" / name).is_file())

    assert len(named) > 10
    assert missing == []


def test_every_images_variable_named_is_read_by_settings_or_the_cli() -> None:
    cli_variables = set(VARIABLE.findall((ROOT / "app" / "cli.py").read_text()))
    named = set(VARIABLE.findall(README))

    unknown = sorted(named - _setting_variables() - cli_variables)

    assert unknown == []
