"""Transform template.yaml as `sam build` + `sam deploy` do, printing the CloudFormation
that would be deployed as JSON. Runs in its own venv (.sam-translator/, see
requirements/sam-translator.txt): `python tests/sam_transform.py TEMPLATE [PARAMS_JSON]`.
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# What `sam build` writes into each image function once it has built Dockerfile.lambda.
BUILT_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/image-service:built"


class NoManagedPolicies:
    """The translator asks IAM for managed policy names only where a template names one
    by name; ours names ARNs."""

    def load(self) -> dict[str, str]:
        return {}


def main() -> None:
    template = yaml_parse(open(sys.argv[1]).read())  # noqa: SIM115
    parameters = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function" and "Dockerfile" in resource.get(
            "Metadata", {}
        ):
            resource["Properties"]["ImageUri"] = BUILT_IMAGE
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    print(json.dumps(transform(template, parameters, NoManagedPolicies())))


if __name__ == "__main__":
    main()
