# The AWS CLI inside the container, with the function's own credentials (Lambda's AWS_*
# variables are passed into the container). AWS CLI 2.9 predates AWS_ENDPOINT_URL, so a
# custom endpoint (a local stand-in) is passed on explicitly.
set -eu
aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} s3 ls "s3://$BUCKET/" --recursive \
  | awk '{print $3, $4}'
