"""The DynamoDB tables as template.yaml declares them, so local runs and tests use the very same shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The template's logical ids, and the environment variable that names each table to the code.
TABLE_ENV = {"KeysTable": "KEYS_TABLE", "UsageTable": "USAGE_TABLE"}
_CREATE_FIELDS = ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")


def _load_template(path: Path) -> dict[str, Any]:
    import yaml  # a development dependency: only local runs and tests read the template

    class CfnLoader(yaml.SafeLoader):
        pass

    def any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]

    CfnLoader.add_multi_constructor("!", any_tag)
    return yaml.load(path.read_text(), Loader=CfnLoader)


def definitions(template: Path) -> dict[str, dict[str, Any]]:
    """CreateTable arguments (without TableName) for each table resource, by logical id."""
    resources = _load_template(template)["Resources"]
    found = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        args: dict[str, Any] = {k: props[k] for k in _CREATE_FIELDS if k in props}
        args["BillingMode"] = "PAY_PER_REQUEST"
        if "StreamSpecification" in props:  # CloudFormation names only the view; the API also wants it enabled
            args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        found[logical_id] = {"create": args, "ttl": props.get("TimeToLiveSpecification")}
    return found


def create_all(client: Any, template: Path, names: dict[str, str]) -> None:
    """Create every table of the template under the given names (logical id -> table name)."""
    for logical_id, spec in definitions(template).items():
        name = names[logical_id]
        client.create_table(TableName=name, **spec["create"])
        ttl = spec["ttl"]
        if ttl and ttl.get("Enabled") in (True, "true", "True"):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
