// Package helm holds the offline checks of the clearance Helm chart: `helm lint`,
// and every manifest `helm template` renders decoded strictly into the Kubernetes
// API types, since schema validators such as kubeconform fetch their schemas
// from the internet. It lives in its own module (deploy/go.mod) so the server's
// module graph never carries the Kubernetes API packages.
package helm
