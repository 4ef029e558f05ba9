#!/usr/bin/env bash
# The reference tools the conformance and interoperability tests run against (Debian packages): dcmtk
# (dcmdump, dcmj2pnm, dcml2pnm, storescu, echoscu), dicom3tools (dciodvfy), libvips-tools (vips, which
# writes the Zstandard TIFF pyramids sharp cannot), the independent JPEG 2000 and HTJ2K encoders
# libopenjp2-tools (opj_compress) and openjph-tools (ojph_compress), which DCMTK lacks, and GDCM's gdcmconv
# (libgdcm-tools), a second toolkit's encoders for the transcode matrix, and Orthanc with its DICOMweb plugin
# (orthanc, orthanc-dicomweb), a real STOW-RS and WADO-RS client. Installs what is
# missing when run as root on Debian; otherwise says what to install. Tests that need a tool run only where it
# is present.
set -euo pipefail
need=()
command -v dcmdump >/dev/null 2>&1 || need+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v vips >/dev/null 2>&1 || need+=(libvips-tools)
command -v opj_compress >/dev/null 2>&1 || need+=(libopenjp2-tools)
command -v ojph_compress >/dev/null 2>&1 || need+=(openjph-tools)
command -v gdcmconv >/dev/null 2>&1 || need+=(libgdcm-tools)
[ -x /usr/sbin/Orthanc ] || need+=(orthanc)
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then
  echo "test-tools: installing ${need[*]}" >&2
  # Orthanc's package would start its own server, listening on every interface: no service starts while
  # installing (policy-rc.d), and the tests run their own Orthanc on loopback.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
else
  echo "test-tools: missing ${need[*]}; install them (Debian: apt-get install ${need[*]}) to run the tests that use them" >&2
fi
