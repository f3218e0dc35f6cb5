// estargz converts an OCI layout's image to eStargz with the stargz-snapshotter project's own
// estargz package (Debian's golang-github-containerd-stargz-snapshotter-dev): the third-party
// producer the lazy loader's eStargz reader is tested against. Each layer is rebuilt by
// estargz.Build (gzip members per file chunk, a table of contents, the 51-byte footer) and
// named on its descriptor by the TOC digest annotation, as `ctr-remote image optimize` and
// `nerdctl image convert --estargz` name it; the config's diff_ids follow.
//
// With -zstdchunked the layers are zstd:chunked instead (the same TOC in zstd frames), named
// by the same annotation and the containers project's manifest-checksum and -position ones.
//
// usage: estargz -src LAYOUT -tag TAG -dst LAYOUT [-chunk-size BYTES] [-level N] [-prioritize PATH,...] [-zstdchunked]
package main

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
)

type descriptor map[string]interface{}

// zstdChunked is the package's zstd:chunked compressor and decompressor as one Compression
// (as its own tests pair them).
type zstdChunked struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

func blobPath(layout, digest string) string {
	return filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

func put(layout string, bytes []byte) (string, int) {
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(bytes))
	if err := os.WriteFile(blobPath(layout, digest), bytes, 0o644); err != nil {
		log.Fatal(err)
	}
	return digest, len(bytes)
}

func readJSON(path string, into interface{}) {
	bytes, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := json.Unmarshal(bytes, into); err != nil {
		log.Fatalf("%s: %v", path, err)
	}
}

func main() {
	src := flag.String("src", "", "source OCI layout")
	tag := flag.String("tag", "", "image tag in the source layout")
	dst := flag.String("dst", "", "destination OCI layout (created)")
	chunk := flag.Int("chunk-size", 0, "eStargz chunk size (0: the package's default)")
	prioritize := flag.String("prioritize", "", "comma-separated files to put first")
	level := flag.Int("level", 0, "gzip level (0: the package's default)")
	chunked := flag.Bool("zstdchunked", false, "write zstd:chunked (zstd frames) instead of gzip eStargz")
	flag.Parse()
	if *src == "" || *tag == "" || *dst == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := os.MkdirAll(filepath.Join(*dst, "blobs", "sha256"), 0o755); err != nil {
		log.Fatal(err)
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	readJSON(filepath.Join(*src, "index.json"), &index)
	var manifestDigest string
	for _, m := range index.Manifests {
		if notes, ok := m["annotations"].(map[string]interface{}); ok && notes["org.opencontainers.image.ref.name"] == *tag {
			manifestDigest = m["digest"].(string)
		}
	}
	if manifestDigest == "" {
		log.Fatalf("no image tagged %q in %s", *tag, *src)
	}
	var manifest map[string]interface{}
	readJSON(blobPath(*src, manifestDigest), &manifest)
	configDesc := manifest["config"].(map[string]interface{})
	var config map[string]interface{}
	readJSON(blobPath(*src, configDesc["digest"].(string)), &config)

	var options []estargz.Option
	if *chunk > 0 {
		options = append(options, estargz.WithChunkSize(*chunk))
	}
	if *level > 0 {
		options = append(options, estargz.WithCompressionLevel(*level))
	}
	mediaType := "application/vnd.oci.image.layer.v1.tar+gzip"
	if *chunked {
		mediaType = "application/vnd.oci.image.layer.v1.tar+zstd"
	}
	if *prioritize != "" {
		// A layer that lacks some of them (an upper layer) is built all the same.
		var missed []string
		options = append(options, estargz.WithPrioritizedFiles(strings.Split(*prioritize, ",")),
			estargz.WithAllowPrioritizeNotFound(&missed))
	}
	var diffIDs []interface{}
	var layers []interface{}
	for _, l := range manifest["layers"].([]interface{}) {
		layer := l.(map[string]interface{})
		file, err := os.Open(blobPath(*src, layer["digest"].(string)))
		if err != nil {
			log.Fatal(err)
		}
		info, err := file.Stat()
		if err != nil {
			log.Fatal(err)
		}
		// zstd:chunked's compressor records its TOC's place in Metadata, for the annotations.
		metadata := map[string]string{}
		layerOptions := options
		if *chunked {
			layerOptions = append(layerOptions, estargz.WithCompression(zstdChunked{
				&zstdchunked.Compressor{CompressionLevel: zstd.SpeedFastest, Metadata: metadata},
				&zstdchunked.Decompressor{}}))
		}
		blob, err := estargz.Build(io.NewSectionReader(file, 0, info.Size()), layerOptions...)
		if err != nil {
			log.Fatalf("layer %s: %v", layer["digest"], err)
		}
		bytes, err := io.ReadAll(blob)
		if err != nil {
			log.Fatal(err)
		}
		if err := blob.Close(); err != nil {
			log.Fatal(err)
		}
		file.Close()
		digest, size := put(*dst, bytes)
		diffIDs = append(diffIDs, blob.DiffID().String())
		metadata[estargz.TOCJSONDigestAnnotation] = blob.TOCDigest().String()
		layers = append(layers, descriptor{
			"mediaType":   mediaType,
			"digest":      digest,
			"size":        size,
			"annotations": metadata,
		})
		fmt.Printf("%s -> %s (%d bytes, toc %s)\n", layer["digest"], digest, size, blob.TOCDigest())
	}
	config["rootfs"] = map[string]interface{}{"type": "layers", "diff_ids": diffIDs}
	configBytes, err := json.Marshal(config)
	if err != nil {
		log.Fatal(err)
	}
	configDigest, configSize := put(*dst, configBytes)
	manifest["config"] = descriptor{
		"mediaType": "application/vnd.oci.image.config.v1+json",
		"digest":    configDigest,
		"size":      configSize,
	}
	manifest["layers"] = layers
	manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
	manifestBytes, err := json.Marshal(manifest)
	if err != nil {
		log.Fatal(err)
	}
	digest, size := put(*dst, manifestBytes)
	top := map[string]interface{}{
		"schemaVersion": 2,
		"manifests": []descriptor{{
			"mediaType":   "application/vnd.oci.image.manifest.v1+json",
			"digest":      digest,
			"size":        size,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": *tag},
		}},
	}
	topBytes, err := json.Marshal(top)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*dst, "index.json"), topBytes, 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*dst, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("manifest", digest, "size", strconv.Itoa(size))
}
