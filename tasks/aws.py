"""The one place that turns the AWS settings into prefect-aws credentials, for Secrets Manager and S3 alike."""

from __future__ import annotations

from typing import Any

from app.settings import Settings


def aws_credentials(settings: Settings, botocore_config: dict[str, Any] | None = None) -> Any:
    """prefect-aws `AwsCredentials` from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION / AWS_ENDPOINT_URL
    (none set: boto3's own chain, e.g. an instance role); `botocore_config` tunes the clients' timeouts and retries."""
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    return AwsCredentials(
        aws_access_key_id=settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None,
        aws_secret_access_key=settings.aws_secret_access_key, region_name=settings.aws_region,
        aws_client_parameters=AwsClientParameters(endpoint_url=settings.aws_endpoint_url,
                                                  **({"config": botocore_config} if botocore_config else {})),
    )
